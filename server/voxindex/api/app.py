"""The FastAPI application: one engine per process, created at start-up and stopped at shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from voxindex import __version__
from voxindex.api import rest
from voxindex.api.native_ws import native_stream
from voxindex.config import Settings
from voxindex.engine.scheduler import Scheduler
from voxindex.index.service import LiveIndex
from voxindex.models.loader import WhisperModel, load_model

log = logging.getLogger("voxindex.api")


@dataclass
class Services:
    settings: Settings
    model: WhisperModel
    scheduler: Scheduler
    index: LiveIndex | None


def create_app(settings: Settings, model: WhisperModel | None = None) -> FastAPI:
    """Build the app. ``model`` lets tests share one loaded model; otherwise it loads at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wm = model or load_model(settings.model, settings.device, settings.cache_dir, settings.compute_type)
        index = LiveIndex.open(settings.data_dir, settings.ivf_threshold) if settings.index else None
        scheduler = Scheduler(wm, settings, index)
        scheduler.start()
        app.state.services = Services(settings, wm, scheduler, index)
        log.info("voxindex %s serving %s on %s", __version__, wm.name, wm.device)
        try:
            yield
        finally:
            scheduler.stop()
            if index is not None:
                index.close()

    app = FastAPI(title="voxindex", version=__version__, lifespan=lifespan)
    app.include_router(rest.router)

    @app.exception_handler(rest.ApiError)
    async def api_error(request: Request, e: rest.ApiError) -> JSONResponse:
        return rest.error_response(e)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in e.errors()
        )
        return rest.error_response(rest.ApiError(400, "invalid_request", problems))

    def services() -> Services:
        return app.state.services  # type: ignore[no-any-return]

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        s = services()
        await native_stream(ws, s.scheduler, s.settings)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = services()
        body: dict[str, Any] = {
            "status": "ok",
            "model": s.model.name,
            "device": str(s.model.device),
            "streams": len(s.scheduler.streams),
            "lag_s": round(s.scheduler.lag, 3),
        }
        if s.index is not None:
            body["index"] = {
                "segments": s.index.store.count_segments(),
                "vectors": s.index.indexer.vectors.size,
                "kind": s.index.indexer.vectors.kind,
            }
        return body

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        s = services()
        return {"data": [{"id": s.model.name, "multilingual": s.model.multilingual}]}

    return app


def serve(settings: Settings) -> None:
    import uvicorn

    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )

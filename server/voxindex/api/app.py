"""The FastAPI application: one engine per process, created at start-up and stopped at shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, WebSocket

from voxindex import __version__
from voxindex.api.native_ws import native_stream
from voxindex.config import Settings
from voxindex.engine.scheduler import Scheduler
from voxindex.models.loader import WhisperModel, load_model

log = logging.getLogger("voxindex.api")


@dataclass
class Services:
    settings: Settings
    model: WhisperModel
    scheduler: Scheduler


def create_app(settings: Settings, model: WhisperModel | None = None) -> FastAPI:
    """Build the app. ``model`` lets tests share one loaded model; otherwise it loads at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wm = model or load_model(settings.model, settings.device, settings.cache_dir, settings.compute_type)
        scheduler = Scheduler(wm, settings)
        scheduler.start()
        app.state.services = Services(settings, wm, scheduler)
        log.info("voxindex %s serving %s on %s", __version__, wm.name, wm.device)
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(title="voxindex", version=__version__, lifespan=lifespan)

    def services() -> Services:
        return app.state.services  # type: ignore[no-any-return]

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        s = services()
        await native_stream(ws, s.scheduler, s.settings)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = services()
        return {
            "status": "ok",
            "model": s.model.name,
            "device": str(s.model.device),
            "streams": len(s.scheduler.streams),
            "lag_s": round(s.scheduler.lag, 3),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        s = services()
        return {"data": [{"id": s.model.name, "multilingual": s.model.multilingual}]}

    return app


def serve(settings: Settings) -> None:
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, ws="websockets-sansio", log_level="info")

"""The FastAPI application: every route module's router, error bodies, limits, the browser app,
and a lifespan that starts the services in a worker thread and stops them at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from slowapi.errors import RateLimitExceeded

from voxindex import __version__
from voxindex.api import (
    deepgram_ws,
    flux_ws,
    health,
    native_ws,
    openai_rest,
    realtime_ws,
    recordings,
    search,
    streams,
)
from voxindex.api.http import ApiError, error_response
from voxindex.api.limits import BodySizeLimit, RateLimitMiddleware, rate_limited_response, rest_limiter
from voxindex.api.services import Boot, Services, running
from voxindex.config import Settings
from voxindex.errors import NotReadyError, StoreUnavailableError, VoxError
from voxindex.metrics import Metrics

log = logging.getLogger("voxindex.api")
WEB_DIR = Path(__file__).resolve().parents[3] / "clients" / "web"  # the repository's browser app
ROUTERS = (search, streams, openai_rest, recordings, health, native_ws, deepgram_ws, flux_ws, realtime_ws)

Start = Callable[[Boot, Metrics, asyncio.Event], Services]


def build_app(settings: Settings, start: Start) -> FastAPI:
    """The app; ``start`` (run in a worker thread while the app already answers probes) loads
    the model, opens the index, warms up and starts the engine (``serve.start_services``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        boot: Boot = app.state.boot
        draining = asyncio.Event()

        async def starting() -> None:
            try:
                services = await asyncio.to_thread(start, boot, app.state.metrics, draining)
                if services.recordings is not None:
                    services.recordings.resume()  # schedules its work on this loop
                app.state.services = services
            except Exception as e:
                boot.failed = str(e) if isinstance(e, VoxError) else f"{e.__class__.__name__}: {e}"
                log.exception("start-up failed: %s", boot.failed)

        started = asyncio.create_task(starting())
        try:
            yield
        finally:
            draining.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(started)  # a thread cannot be cancelled: let it finish
            _stop(app, settings)

    app = FastAPI(title="voxindex", version=__version__, lifespan=lifespan)
    app.state.metrics = Metrics()
    app.state.services = None
    app.state.boot = Boot()
    app.state.metrics.watch(app.state.metrics.ready, lambda: float(health.is_ready(health.readiness(app))))
    # the routes themselves, not include_router(): FastAPI >= 0.16x wraps an included router in
    # one route without an endpoint, and slowapi finds (and limits) requests by route endpoint
    for module in ROUTERS:
        app.router.routes.extend(module.router.routes)
    app.state.limiter = limiter = rest_limiter(settings, lambda: running(app).auth)
    for probe in health.PROBES:  # probes and scrapes are never rate limited
        limiter.exempt(probe)  # type: ignore[no-untyped-call]
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RateLimitExceeded, rate_limited_response)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailableError, _not_ready)  # type: ignore[arg-type]
    app.add_exception_handler(NotReadyError, _not_ready)  # type: ignore[arg-type]
    web = settings.web_dir or WEB_DIR
    if web.is_dir():  # the browser app at /, after every API route
        app.mount("/", StaticFiles(directory=web, html=True), name="web")
    return app


def _stop(app: FastAPI, settings: Settings) -> None:
    """Streams cut off at the deadline are still finalized and stored, as time allows; after a
    second signal the engine stops after its current step (finals already sent were committed
    before they were sent). A stopped app keeps nothing heavy alive (FastAPI caches its routes,
    which hold it)."""
    s: Services | None = app.state.services
    if s is not None:
        deadline = getattr(app.state, "stop_deadline", None)
        left = settings.shutdown_grace_s if deadline is None else deadline - time.monotonic()
        s.scheduler.stop(timeout=max(0.0, left))
        if s.audio is not None:
            s.audio.stop()
        if s.index is not None:
            s.index.close()
        app.state.metrics.unwatch()
        app.state.services = None


async def _api_error(request: Request, e: ApiError) -> JSONResponse:
    return error_response(e)


async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in e.errors())
    return error_response(ApiError(400, "invalid_request", problems))


async def _not_ready(request: Request, e: VoxError) -> JSONResponse:
    body = {"error": {"code": e.code, "message": e.message}}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

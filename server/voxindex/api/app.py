"""The FastAPI application: one engine per process, created at start-up and stopped at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from slowapi.errors import RateLimitExceeded

from voxindex import __version__
from voxindex.api import openai_rest, rest
from voxindex.api import recordings as recordings_api
from voxindex.api.auth import SCOPES, AuthConfig, Authenticator, mint_token
from voxindex.api.deepgram_ws import deepgram_stream
from voxindex.api.deepgram_ws import refuse as refuse_deepgram
from voxindex.api.keys import ApiKeyStore
from voxindex.api.limits import (
    BodySizeLimit,
    ConnectLimits,
    RateLimitMiddleware,
    rate_limited_response,
    rest_limiter,
)
from voxindex.api.native_ws import native_stream
from voxindex.api.native_ws import refuse as refuse_native
from voxindex.api.openai_rest import OfflineService
from voxindex.api.recordings import RecordingService
from voxindex.api.services import Boot, Services, running
from voxindex.audio import Float32Array, decode_file
from voxindex.config import Settings
from voxindex.device import DeviceProbe
from voxindex.engine.recordings import Recordings
from voxindex.engine.scheduler import ADMISSION_MAX_LAG_S, Scheduler
from voxindex.engine.speakers import load_speakers
from voxindex.errors import InvalidRequestError, NotReadyError, StoreUnavailableError, VoxError
from voxindex.index.health import StoreHealth, parse_reserve
from voxindex.index.stores import check_store, open_index
from voxindex.index.stream_audio import StreamAudio
from voxindex.metrics import Metrics
from voxindex.models.loader import WhisperModel, load_model
from voxindex.models.registry import resolve

log = logging.getLogger("voxindex.api")
WEB_DIR = Path(__file__).resolve().parents[3] / "clients" / "web"  # the repository's browser app
LIVENESS_STALL_S = 120.0  # an engine loop that has not turned for this long is stuck: restart


def start_services(
    settings: Settings, model: WhisperModel | None, boot: Boot, metrics: Metrics, draining: asyncio.Event
) -> Services:
    """Load the model, open the index, warm the model up and start the engine (a worker thread:
    the server already answers probes meanwhile)."""
    wm = model or load_model(settings.model, settings.device, settings.cache_dir, settings.compute_type)
    boot.model = "ok"
    index = open_index(settings, wm.device.type) if settings.index else None
    boot.index = "ok" if index is not None else "disabled"
    speakers = load_speakers(wm.device)
    background = Recordings(index, wm.name) if index is not None else None
    scheduler = Scheduler(wm, settings, index, background, metrics, speakers)
    if settings.warmup:
        t = time.perf_counter()
        reading = scheduler.warm_up(warmup_audio(), batch=4)
        took = time.perf_counter() - t
        metrics.warmup_seconds.set(took)
        if not reading.text.strip():
            log.warning("warm-up heard nothing in the sample speech: is the model %s sound?", wm.name)
        log.info("warm-up took %.2f s", took)
    scheduler.start()
    store = StoreHealth(index.catalog, settings.store_min_free) if index else None
    recordings = (
        RecordingService(settings, wm.name, index, background, store, speakers, wm.languages)
        if index and background
        else None
    )
    auth, connects = build_authenticator(settings), ConnectLimits.from_settings(settings)
    offline = OfflineService(wm, index, speakers)
    device = DeviceProbe(wm.device)
    audio = StreamAudio(settings.data_dir / "audio", settings.record_retention_s) if index else None
    if audio is not None:
        audio.start()  # the retention sweeper
    services = Services(
        settings,
        wm,
        scheduler,
        index,
        auth,
        connects,
        offline,
        recordings,
        draining,
        metrics,
        device,
        store,
        audio,
    )
    watch(services)
    boot.warm = "ok"
    log.info("voxindex %s serving %s on %s", __version__, wm.name, wm.device)
    return services


def warmup_audio() -> Float32Array:
    """Real speech shipped with the package: warm-up runs every stage (VAD, decode, alignment)."""
    return decode_file(Path(str(resources.files("voxindex.samples") / "goforward.wav")))


def watch(s: Services) -> None:
    """The gauges read from live state at each scrape."""
    m = s.metrics
    m.build.info({"version": __version__, "model": s.model.name, "device": str(s.model.device)})
    m.watch(m.active_streams, lambda: len(s.scheduler.streams))
    m.watch(m.engine_lag, lambda: s.scheduler.lag)
    m.watch(m.draining, lambda: float(s.draining.is_set()))
    if s.index is not None:
        index = s.index
        m.watch(m.recordings_pending, lambda: len(index.catalog.unfinished_recordings()))
        m.watch_index(index.stats)
    if s.store is not None:
        m.watch(m.store_free_bytes, s.store.free_bytes)
        m.watch(m.store_reserve_bytes, s.store.reserve_bytes)
    m.device_info.labels(s.device.device.type, s.device.name).set(1)
    if s.model.device.type == "cuda":
        device = s.model.device
        m.watch_gpu(lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device))
        m.watch_gpu_card(s.device.memory, s.device.utilization)


def wait_ready(app: FastAPI, timeout: float = 300.0) -> None:
    """Block until an app served in this process has started (tests, `voxindex bench`)."""
    deadline = time.monotonic() + timeout
    while getattr(app.state, "services", None) is None:
        boot: Boot = app.state.boot
        if boot.failed is not None:
            raise RuntimeError(f"server start-up failed: {boot.failed}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after {timeout:.0f} s: {boot}")
        time.sleep(0.05)


def is_ready(checks: dict[str, str]) -> bool:
    return all(v in ("ok", "disabled") for v in checks.values())


def readiness(app: FastAPI) -> dict[str, str]:
    """Each check /readyz makes; all "ok" means this replica should get new streams. The store
    check writes (``StoreHealth.check``): call this off the event loop."""
    boot: Boot = app.state.boot
    checks = {"model": boot.model, "index": boot.index, "warm": boot.warm}
    if boot.failed is not None:
        checks["start"] = "failed"
    s: Services | None = app.state.services
    if s is not None:
        checks["engine"] = "ok" if s.scheduler.alive else "stopped"
        full = len(s.scheduler.streams) >= s.settings.max_streams or s.scheduler.lag > ADMISSION_MAX_LAG_S
        checks["capacity"] = "full" if full else "ok"
        if s.store is not None:
            checks["store"] = s.store.check()
        if s.draining.is_set():
            checks["draining"] = "yes"
    return checks


def create_app(settings: Settings, model: WhisperModel | None = None) -> FastAPI:
    """Build the app. ``model`` lets tests share one loaded model; otherwise it loads at start-up.

    The app listens at once; the model loads and warms up in a worker thread, and until it is
    ready /readyz answers 503 and streams are refused with ``not_ready`` (1013 / HTTP 503).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        boot: Boot = app.state.boot
        draining = asyncio.Event()

        async def start() -> None:
            try:
                services = await asyncio.to_thread(
                    start_services, settings, model, boot, app.state.metrics, draining
                )
                if services.recordings is not None:
                    services.recordings.resume()  # schedules its work on this loop
                app.state.services = services
            except Exception as e:
                boot.failed = str(e) if isinstance(e, VoxError) else f"{e.__class__.__name__}: {e}"
                log.exception("start-up failed: %s", boot.failed)

        starting = asyncio.create_task(start())
        try:
            yield
        finally:
            draining.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(starting)  # a thread cannot be cancelled: let it finish
            s: Services | None = app.state.services
            if s is not None:
                # streams cut off at the deadline are still finalized and stored, as time allows;
                # after a second signal the engine stops after its current step (finals already
                # sent were committed before they were sent)
                deadline = getattr(app.state, "stop_deadline", None)
                left = settings.shutdown_grace_s if deadline is None else deadline - time.monotonic()
                s.scheduler.stop(timeout=max(0.0, left))
                if s.audio is not None:
                    s.audio.stop()
                if s.index is not None:
                    s.index.close()
                # a stopped app keeps nothing heavy alive (FastAPI caches its routes, which hold it)
                app.state.metrics.unwatch()
                app.state.services = None

    app = FastAPI(title="voxindex", version=__version__, lifespan=lifespan)
    app.state.metrics = Metrics()
    app.state.services = None
    app.state.boot = Boot()
    app.state.metrics.watch(app.state.metrics.ready, lambda: float(is_ready(readiness(app))))
    # the routes themselves, not include_router(): FastAPI >= 0.16x wraps an included router in
    # one route without an endpoint, and slowapi finds (and limits) requests by route endpoint
    app.router.routes.extend(rest.router.routes + openai_rest.router.routes + recordings_api.router.routes)
    app.state.limiter = limiter = rest_limiter(settings, lambda: services().auth)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RateLimitExceeded, rate_limited_response)  # type: ignore[arg-type]

    @app.exception_handler(rest.ApiError)
    async def api_error(request: Request, e: rest.ApiError) -> JSONResponse:
        return rest.error_response(e)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in e.errors()
        )
        return rest.error_response(rest.ApiError(400, "invalid_request", problems))

    @app.exception_handler(StoreUnavailableError)
    @app.exception_handler(NotReadyError)
    async def not_ready(request: Request, e: VoxError) -> JSONResponse:
        body = {"error": {"code": e.code, "message": e.message}}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    def services() -> Services:
        return running(app)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        s: Services | None = app.state.services
        if s is None:
            app.state.metrics.streams_refused.labels("not_ready").inc()
            await refuse_native(ws, NotReadyError("the server is starting; connect again shortly"))
            return
        await native_stream(ws, s.scheduler, s.settings, s.auth, s.connects, s.draining, s.metrics, s.audio)

    @app.websocket("/v1/listen")
    async def listen(ws: WebSocket) -> None:
        """Deepgram's live protocol (docs/compatibility.md)."""
        s: Services | None = app.state.services
        if s is None:
            app.state.metrics.streams_refused.labels("not_ready").inc()
            await refuse_deepgram(ws, NotReadyError("the server is starting; connect again shortly"))
            return
        await deepgram_stream(ws, s.scheduler, s.settings, s.auth, s.connects, s.draining, s.metrics)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the process serves requests and its engine loop turns. Restart if 503."""
        boot: Boot = app.state.boot
        s: Services | None = app.state.services
        problem = None
        if boot.failed is not None:
            problem = f"start-up failed: {boot.failed}"
        elif s is not None and not s.draining.is_set():
            if not s.scheduler.alive:
                problem = "the engine loop has stopped"
            elif time.monotonic() - s.scheduler.heartbeat > LIVENESS_STALL_S:
                problem = f"the engine loop has not turned for {LIVENESS_STALL_S:.0f} s"
        if problem is not None:
            return JSONResponse({"status": "failing", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: model loaded and warmed, index open, engine running, capacity left, not
        draining. 503 takes this replica out of the load balancer without restarting it."""
        checks = await asyncio.to_thread(readiness, app)
        ready = is_ready(checks)
        body: dict[str, object] = {"status": "ready" if ready else "unready", "checks": checks}
        s: Services | None = app.state.services
        if s is not None:
            body["device"] = await asyncio.to_thread(s.device.facts)  # NVML calls block briefly
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus exposition (docs/operations.md)."""
        body = await asyncio.to_thread(app.state.metrics.render)  # readiness probes the store
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Human-readable status (model, streams, index); 503 ``not_ready`` while starting."""
        s = services()
        body: dict[str, Any] = {
            "status": "ok",
            "model": s.model.name,
            "device": str(s.model.device),
            "streams": len(s.scheduler.streams),
            "lag_s": round(s.scheduler.lag, 3),
        }
        if s.index is not None:
            stats = s.index.stats()
            body["index"] = {"segments": stats.segments, "vectors": stats.vectors, "kind": stats.kind}
        return body

    for probe in (health, healthz, readyz, metrics):  # probes and scrapes are never rate limited
        limiter.exempt(probe)  # type: ignore[no-untyped-call]

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        s = services()
        return {"data": [{"id": s.model.name, "multilingual": s.model.multilingual}]}

    web = settings.web_dir or WEB_DIR
    if web.is_dir():  # the browser app at /, after every API route
        app.mount("/", StaticFiles(directory=web, html=True), name="web")
    return app


def auth_config(settings: Settings) -> AuthConfig:
    secret = settings.jwt_secret
    if secret is None and settings.jwt_secret_file is not None:
        secret = settings.jwt_secret_file.read_text().strip()
    return AuthConfig(
        enabled=not settings.no_auth,
        hs_secret=secret,
        public_key_file=settings.jwt_public_key,
        jwks_file=settings.jwks_file,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def build_authenticator(settings: Settings) -> Authenticator:
    return Authenticator(auth_config(settings), ApiKeyStore(settings.data_dir / "keys.sqlite3"))


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_secure(settings: Settings) -> Settings:
    """Refuse to serve unauthenticated anywhere but loopback, or with no way to verify anyone.

    ``--dev`` makes a secret in the data dir (once) and prints a token ready to use.
    """
    if settings.no_auth:
        if settings.host not in LOOPBACK:
            raise InvalidRequestError(f"--no-auth only binds loopback (127.0.0.1), not {settings.host}")
        return settings
    if settings.dev and not auth_config(settings).has_verifier:
        path = settings.data_dir / "dev-jwt-secret"
        if not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        settings = replace(settings, jwt_secret_file=path)
        token = mint_token(path.read_text().strip(), "dev", "default", list(SCOPES), 7 * 24 * 3600)
        print(
            f"voxindex dev mode: a token for tenant 'default' with every scope (7 days):\n  {token}\n"
            f"  stream: ws://{settings.host}:{settings.port}/v1/stream?access_token=<token>\n"
            f"  search: curl -H 'Authorization: Bearer <token>' "
            f"'http://{settings.host}:{settings.port}/v1/search?q=hello'",
            flush=True,
        )
        return settings
    has_keys = any(k.revoked is None for k in ApiKeyStore(settings.data_dir / "keys.sqlite3").list())
    if not auth_config(settings).has_verifier and not has_keys:
        raise InvalidRequestError(
            "no credentials configured: set --jwt-secret-file / --jwt-public-key / --jwks-file, "
            "create an API key (voxindex keys create), use --dev for a generated development secret, "
            "or --no-auth on loopback"
        )
    return settings


def serve(settings: Settings) -> None:
    import uvicorn

    settings = check_secure(settings)
    resolve(settings.model)  # an unknown model fails now, with its message, not after start-up
    parse_reserve(settings.store_min_free)
    check_store(settings)  # a damaged or unreadable store: refuse to start, naming the file
    app = create_app(settings)
    DrainingServer(uvicorn.Config(app, **uvicorn_options(settings)), app, settings.shutdown_grace_s).run()


class DrainingServer:
    """uvicorn, with a graceful shutdown that lets streams finish.

    On SIGTERM uvicorn would close every WebSocket with 1012 at once; first, every stream is
    finalized instead (its clients get their last finals and `closed`, then 1012, so they
    reconnect elsewhere), new streams are refused, and only then does uvicorn shut down. A
    second SIGTERM, or the grace period running out, cuts the wait short; finals are committed
    to the store before they are sent, so nothing committed is lost either way.
    """

    def __init__(self, config: Any, app: FastAPI, grace_s: float) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                """SIGTERM/SIGINT: shut down gracefully, then exit 0; a second one: stop waiting."""
                if self.should_exit:
                    self.force_exit = True
                    app.state.stop_deadline = time.monotonic()  # the engine stops after this step
                self.should_exit = True

            async def shutdown(self, sockets: Any = None) -> None:
                deadline = time.monotonic() + grace_s
                if getattr(app.state, "stop_deadline", None) is None:
                    app.state.stop_deadline = deadline
                services: Services | None = app.state.services
                if services is not None:
                    services.draining.set()
                    while services.scheduler.streams and not self.force_exit and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.3)  # the handlers send `closed` and their 1012
                await super().shutdown(sockets)

        self.server = Server(config)

    def run(self) -> None:
        self.server.run()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app. WebSocket messages up to 4x the frame limit reach the handler,
    which answers 4413 with an explanation; larger ones are cut off by the protocol layer (1009)
    before they are buffered."""
    return {
        "host": settings.host,
        "port": settings.port,
        "ws": "websockets-sansio",
        "ws_max_size": 4 * max(settings.max_frame_bytes, settings.max_control_bytes),
        "log_level": settings.log_level.lower(),
        "log_config": None,  # logging is set up once, by voxindex.logs (JSON or text, redacted)
        "proxy_headers": True,  # the client's address from X-Forwarded-For, only from trusted proxies
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_s),
    }

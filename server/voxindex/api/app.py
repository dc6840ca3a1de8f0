"""The FastAPI application: one engine per process, created at start-up and stopped at shutdown."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware

from voxindex import __version__
from voxindex.api import openai_rest, rest
from voxindex.api import recordings as recordings_api
from voxindex.api.auth import SCOPES, AuthConfig, Authenticator, mint_token
from voxindex.api.deepgram_ws import deepgram_stream
from voxindex.api.keys import ApiKeyStore
from voxindex.api.limits import (
    BodySizeLimit,
    ConnectLimits,
    rate_limited_response,
    rest_limiter,
)
from voxindex.api.native_ws import native_stream
from voxindex.api.openai_rest import OfflineService
from voxindex.api.recordings import RecordingService
from voxindex.config import Settings
from voxindex.engine.recordings import Recordings
from voxindex.engine.scheduler import Scheduler
from voxindex.errors import InvalidRequestError
from voxindex.index.service import LiveIndex
from voxindex.models.loader import WhisperModel, load_model

log = logging.getLogger("voxindex.api")
WEB_DIR = Path(__file__).resolve().parents[3] / "clients" / "web"  # the repository's browser app


@dataclass
class Services:
    settings: Settings
    model: WhisperModel
    scheduler: Scheduler
    index: LiveIndex | None
    auth: Authenticator
    connects: ConnectLimits
    offline: OfflineService
    recordings: RecordingService | None
    draining: asyncio.Event  # set on graceful shutdown: streams finish, new ones are refused


def create_app(settings: Settings, model: WhisperModel | None = None) -> FastAPI:
    """Build the app. ``model`` lets tests share one loaded model; otherwise it loads at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wm = model or load_model(settings.model, settings.device, settings.cache_dir, settings.compute_type)
        index = LiveIndex.open(settings.data_dir, settings.ivf_threshold) if settings.index else None
        background = Recordings(index, wm.name) if index is not None else None
        scheduler = Scheduler(wm, settings, index, background)
        scheduler.start()
        recordings = RecordingService(settings, wm.name, index, background) if index and background else None
        if recordings is not None:
            recordings.resume()
        auth, connects = build_authenticator(settings), ConnectLimits.from_settings(settings)
        offline = OfflineService(wm, index)
        app.state.services = Services(
            settings, wm, scheduler, index, auth, connects, offline, recordings, asyncio.Event()
        )
        log.info("voxindex %s serving %s on %s", __version__, wm.name, wm.device)
        try:
            yield
        finally:
            scheduler.stop()
            if index is not None:
                index.close()

    app = FastAPI(title="voxindex", version=__version__, lifespan=lifespan)
    # the routes themselves, not include_router(): FastAPI >= 0.16x wraps an included router in
    # one route without an endpoint, and slowapi finds (and limits) requests by route endpoint
    app.router.routes.extend(rest.router.routes + openai_rest.router.routes + recordings_api.router.routes)
    app.state.limiter = limiter = rest_limiter(settings, lambda: services().auth)
    app.add_middleware(SlowAPIASGIMiddleware)
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

    def services() -> Services:
        return app.state.services  # type: ignore[no-any-return]

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        s = services()
        await native_stream(ws, s.scheduler, s.settings, s.auth, s.connects, s.draining)

    @app.websocket("/v1/listen")
    async def listen(ws: WebSocket) -> None:
        """Deepgram's live protocol (docs/compatibility.md)."""
        s = services()
        await deepgram_stream(ws, s.scheduler, s.settings, s.auth, s.connects, s.draining)

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

    limiter.exempt(health)  # type: ignore[no-untyped-call]  # probes are never rate limited

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

        grace = grace_s

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                """SIGTERM/SIGINT: shut down gracefully, then exit 0; a second one: stop waiting."""
                if self.should_exit:
                    self.force_exit = True
                self.should_exit = True

            async def shutdown(self, sockets: Any = None) -> None:
                services: Services | None = (
                    getattr(config.loaded_app.app.state, "services", None) if config.loaded else None
                )
                if services is not None:
                    services.draining.set()
                    deadline = time.monotonic() + grace
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
        "timeout_graceful_shutdown": int(settings.shutdown_grace_s),
    }

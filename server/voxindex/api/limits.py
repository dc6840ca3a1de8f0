"""Rate limits, Origin allowlist and request-body size: what a client may ask of the server.

Counters live in a ``limits`` storage (memory by default; ``redis://`` shares them between
replicas). REST requests are counted by slowapi per client IP and per tenant across all routes;
WebSocket handshakes are counted here, with the same storage, per IP before authentication and
per tenant after it. Every refusal carries a documented code and a retry time (docs/limits.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware
from slowapi.wrappers import LimitGroup
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxindex.config import Settings
from voxindex.errors import VoxError

if TYPE_CHECKING:
    from voxindex.api.auth import Authenticator


class RateLimitedError(VoxError):
    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def client_ip(conn: HTTPConnection) -> str:
    """The peer address (uvicorn puts the proxy's X-Forwarded-For here when it trusts the proxy)."""
    return conn.client.host if conn.client else "unknown"


def _rate(text: str) -> RateLimitItem | None:
    return parse(text) if text.strip() else None


@dataclass
class ConnectLimits:
    """WebSocket handshakes per IP and per tenant, in a moving window."""

    strategy: MovingWindowRateLimiter
    per_ip: RateLimitItem | None
    per_tenant: RateLimitItem | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectLimits:
        strategy = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
        return cls(strategy, _rate(settings.ws_connects_per_ip), _rate(settings.ws_connects_per_tenant))

    def hit_ip(self, ip: str) -> None:
        self._hit(self.per_ip, "ws-ip", ip, f"too many connections from {ip}")

    def hit_tenant(self, tenant: str) -> None:
        self._hit(self.per_tenant, "ws-tenant", tenant, f"too many connections for tenant {tenant!r}")

    def _hit(self, item: RateLimitItem | None, kind: str, key: str, what: str) -> None:
        if item is None or self.strategy.hit(item, kind, key):
            return
        reset = self.strategy.get_window_stats(item, kind, key).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        raise RateLimitedError(f"{what}: the limit is {item}; retry in {retry} s", retry)


def origin_allowed(origin: str | None, allowed: str) -> bool:
    """Browsers send ``Origin``; other clients do not and are not subject to the allowlist."""
    allow = {o.strip().rstrip("/") for o in allowed.split(",") if o.strip()}
    if not allow or origin is None or "*" in allow:
        return True
    return origin.rstrip("/") in allow


# ---------------- REST: slowapi ----------------
class RateLimitMiddleware(SlowAPIASGIMiddleware):
    """slowapi's ASGI middleware, less its bug: slowapi 0.1.10 sends ``http.response.start``
    again before every body chunk, so a response of more than one chunk (a recording's media,
    a stream's kept audio: anything over 64 KiB) fails after its first. Here it goes once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def start_once(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if started:
                    return
                started = True
            await send(message)

        await super().__call__(scope, receive, start_once)


def rest_limiter(settings: Settings, auth: Callable[[], Authenticator]) -> Limiter:
    """A slowapi limiter counting every REST request per client IP and per tenant.

    slowapi takes one key function per limiter, so the per-tenant group is added as a second
    application-wide limit group with its own key (the caller's tenant, or ``-`` without a
    valid credential: those requests are refused anyway and only count against their IP).
    """

    def tenant_key(request: Request) -> str:
        cached = getattr(request.state, "voxindex_tenant", None)
        if cached is None:
            try:
                cached = "tenant:" + auth().authenticate(request.headers.get("authorization")).tenant
            except VoxError:
                cached = "tenant:-"
            request.state.voxindex_tenant = cached
        return str(cached)

    limiter = Limiter(
        key_func=lambda request: "ip:" + client_ip(request),
        application_limits=[settings.rest_rate_per_ip] if settings.rest_rate_per_ip.strip() else [],
        headers_enabled=True,
        storage_uri=settings.rate_limit_storage,
        config_filename=None,
    )
    if settings.rest_rate_per_tenant.strip():
        limiter._application_limits.append(  # see the docstring
            LimitGroup(settings.rest_rate_per_tenant, tenant_key, "tenant", False, None, None, None, 1, False)
        )
    return limiter


def rate_limited_response(request: Request, exc: RateLimitExceeded) -> Response:
    """slowapi's refusal in our error shape, with ``Retry-After`` and ``X-RateLimit-*`` headers."""
    limiter: Limiter = request.app.state.limiter
    response = JSONResponse(
        {"error": {"code": RateLimitedError.code, "message": f"rate limit exceeded: {exc.detail}"}},
        status_code=429,
    )
    return limiter._inject_headers(response, request.state.view_rate_limit)


# ---------------- request bodies ----------------
class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length up front, or while
    the body streams in (chunked uploads). Past the limit the app sees the client disconnect,
    and whatever it answers is dropped: the client gets the 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise  # the app's own failure; a refused request's aftermath is not one

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"request body over the limit of {self.max_bytes} bytes",
                }
            }
        ).encode()
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

"""``GET /v1/realtime``: OpenAI's Realtime API as a transcription session, so Realtime clients
work unchanged (``livekit-plugins-openai``'s ``STT(use_realtime=True)``, the ``openai`` SDK).

The handshake (credentials as the rest of the server: ``Authorization: Bearer``, or the browser
subprotocol ``openai-insecure-api-key.<key>``; refusals are HTTP statuses with OpenAI's error
body), then the session is configured (api/realtime_session.py) until its first audio, when the
engine stream opens with it and ``session.serve_stream`` serves it through the codec
(api/realtime_codec.py). See docs/compatibility.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxindex.api.auth import AuthError, ForbiddenError
from voxindex.api.limits import RateLimitedError
from voxindex.api.protocol import (
    CLOSE_FRAME_TOO_LARGE,
    CLOSE_IDLE,
    CLOSE_SERVICE_RESTART,
    Append,
    Configure,
    close_code,
)
from voxindex.api.realtime_codec import RealtimeCodec
from voxindex.api.realtime_session import (
    FORMATS,
    RealtimeConfig,
    SessionError,
)
from voxindex.api.services import Services
from voxindex.api.session import (
    Draining,
    authorize,
    opened,
    oversized,
    ready,
    receive,
    refused,
    serve_stream,
)
from voxindex.audio import PcmDecoder
from voxindex.engine.events import (
    Configured,
    Error,
)
from voxindex.errors import CapacityError, InvalidRequestError, QuotaError, VoxError

router = APIRouter()
KEY_PROTOCOL = "openai-insecure-api-key."  # browsers' credential, as the SDKs send it
log = logging.getLogger("voxindex.api")

STATUS: list[tuple[type[VoxError], int, str | None]] = [
    (AuthError, 401, "invalid_api_key"),
    (ForbiddenError, 403, None),
    (RateLimitedError, 429, "rate_limit_exceeded"),
    (QuotaError, 429, None),
    (CapacityError, 503, None),
    (InvalidRequestError, 400, None),
]


async def refuse(ws: WebSocket, error: VoxError) -> None:
    """OpenAI refuses the handshake itself: an HTTP status and its JSON error body (OpenAI's code
    where it has one for the case, else voxindex's, docs/errors.md)."""
    status, code = next(
        ((s, c or error.code) for kind, s, c in STATUS if isinstance(error, kind)), (500, error.code)
    )
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": error.message, "type": kind, "param": None, "code": code}}
    await ws.send_denial_response(JSONResponse(body, status_code=status))


def realtime_token(offered: list[str]) -> str | None:
    """A browser's credential: the subprotocol ``openai-insecure-api-key.<key>``."""
    return next((p[len(KEY_PROTOCOL) :] for p in offered if p.startswith(KEY_PROTOCOL)), None)


@router.websocket("/v1/realtime")
async def realtime_route(ws: WebSocket) -> None:
    """OpenAI's Realtime API, transcription sessions (docs/compatibility.md)."""
    services = await ready(ws, refuse)
    if services is not None:
        await realtime_stream(ws, services)


async def realtime_stream(ws: WebSocket, services: Services) -> None:
    s = services
    offered = list(ws.scope.get("subprotocols") or [])
    intent = ws.query_params.get("intent")
    try:
        principal = authorize(ws, realtime_token(offered), s.settings, s.auth, s.connects, s.draining)
        if intent not in (None, "transcription"):
            raise InvalidRequestError(
                f"voxindex serves transcription sessions: intent must be 'transcription', got {intent[:30]!r}"
            )
        s.scheduler.check_room(principal.tenant)
    except VoxError as e:
        refused(ws, e, s.metrics)
        await refuse(ws, e)
        return
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    languages = s.scheduler.model.languages
    config = RealtimeConfig(
        model=ws.query_params.get("model") or s.scheduler.model.name, transcription=intent == "transcription"
    )
    # an append is at most two binary frames' worth; its base64 fits the socket's message limit
    codec = RealtimeCodec(config, languages, 2 * s.settings.max_frame_bytes)
    await ws.send_text(json.dumps(codec.created()))
    first = await _until_audio(ws, codec, services)
    if first is None:
        return
    try:
        stream = s.scheduler.open(
            codec.config.stream_options(languages), asyncio.get_running_loop(), principal.tenant
        )
    except VoxError as e:
        refused(ws, e, s.metrics)
        await _close(ws, codec, Error(e.code, e.message), close_code(e))
        return
    opened(ws, stream, "realtime", s.metrics)
    pcm = PcmDecoder(FORMATS[codec.config.format], codec.config.rate)
    text_limit = 4 * max(s.settings.max_frame_bytes, s.settings.max_control_bytes)  # the socket's own
    await serve_stream(
        ws, stream, s.scheduler, s.settings, codec, pcm, s.draining, first=first, max_text_bytes=text_limit
    )


async def _until_audio(ws: WebSocket, codec: RealtimeCodec, s: Services) -> Append | None:
    """Configure the session until its first audio (returned, to be served), or None when the
    session ended before any."""
    while True:
        try:
            message = await receive(ws, s.settings.idle_timeout_s, s.draining)
        except Draining:
            await _close(
                ws,
                codec,
                Error("server_restarting", "the server is restarting; reconnect"),
                CLOSE_SERVICE_RESTART,
            )
            return None
        except TimeoutError:
            idle = f"no client event for {s.settings.idle_timeout_s:g} s; closing"
            await _close(ws, codec, Error("idle_timeout", idle), CLOSE_IDLE)
            return None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        too_big = oversized(data, s.settings) if data is not None else None
        if too_big is not None:
            await _close(ws, codec, too_big, CLOSE_FRAME_TOO_LARGE)
            return None
        if data is not None:  # raw audio in the session's format (a voxindex extension)
            codec.audio_started = True
            return Append(data)
        text = message.get("text") or ""
        try:
            control = codec.control(text)
        except SessionError as e:
            await ws.send_text(json.dumps(codec.error(Error(e.code, e.message, e.param, e.event_id))))
            continue
        except Exception:  # a bug: logged, the client told, the session goes on
            log.exception("a %d-character client event could not be handled", len(text))
            failed = Error("internal_error", "the server could not handle that event (logged); go on")
            await ws.send_text(json.dumps(codec.error(failed)))
            continue
        if isinstance(control, Append):
            return control
        if isinstance(control, Configure):
            codec.replies.append(codec.render(Configured())[0])
        for reply in codec.take_replies():
            await ws.send_text(json.dumps(reply))


async def _close(ws: WebSocket, codec: RealtimeCodec, error: Error, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(json.dumps(codec.error(error)))
        await ws.close(code, error.message[:120])

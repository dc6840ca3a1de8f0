"""``GET /v1/stream``: the native streaming protocol (docs/protocol.md).

The socket is accepted first and refusals are sent as an ``error`` message plus a close code,
because browsers cannot read the HTTP status of a refused WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxindex.api.auth import Authenticator
from voxindex.api.limits import ConnectLimits
from voxindex.api.protocol import (
    SUBPROTOCOL,
    Configure,
    Control,
    close_code,
    parse_control,
    parse_options,
    subprotocol_token,
    to_wire,
    turn_message,
)
from voxindex.api.services import Services
from voxindex.api.session import authorize, opened, ready, refused, serve_stream
from voxindex.audio import PcmDecoder
from voxindex.config import Settings
from voxindex.engine.events import Configured, Error, Event, Flushed, Ready, TurnInfo
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.stream import Stream
from voxindex.engine.types import TurnOptions
from voxindex.errors import InvalidRequestError, VoxError

router = APIRouter()


class NativeCodec:
    def __init__(self, turns: TurnOptions | None = None) -> None:
        self.turns = turns  # a turn-taking stream's thresholds, as configured so far

    def control(self, text: str) -> Control:
        control = parse_control(text, self.turns)
        if isinstance(control, Configure) and control.turns is not None:
            self.turns = control.turns
        return control

    def render(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, TurnInfo):
            message = turn_message(event)
            return [message] if message is not None else []
        if isinstance(event, (Configured, Flushed)):
            return []  # the native protocol acknowledges neither configure nor flush
        return [to_wire(event)]


@router.websocket("/v1/stream")
async def stream_route(ws: WebSocket) -> None:
    """The native protocol (docs/protocol.md)."""
    services = await ready(ws, refuse)
    if services is not None:
        await native_stream(ws, services)


async def native_stream(ws: WebSocket, services: Services) -> None:
    """A stream over the native protocol; ``record=true`` streams keep their audio in
    ``services.audio`` (refused where it is None)."""
    s = services
    scheduler, settings, metrics, audio, draining = s.scheduler, s.settings, s.metrics, s.audio, s.draining
    auth, connects = s.auth, s.connects
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        stream = _admit(ws, offered, scheduler, settings, auth, connects, draining, audio is not None)
    except VoxError as e:
        refused(ws, e, metrics)
        await _explain(ws, e)
        return
    opened(ws, stream, "native", metrics)
    await ws.send_text(
        json.dumps(to_wire(Ready(stream.id, scheduler.model.name, stream.options.sample_rate)))
    )
    pcm = PcmDecoder(stream.options.encoding, stream.options.sample_rate)
    codec = NativeCodec(stream.options.turns)
    await serve_stream(ws, stream, scheduler, settings, codec, pcm, draining, audio)


async def refuse(ws: WebSocket, error: VoxError) -> None:
    """Refuse a stream before admission: accept, explain, close with the error's code."""
    offered = list(ws.scope.get("subprotocols") or [])
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    await _explain(ws, error)


async def _explain(ws: WebSocket, error: VoxError) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(json.dumps(to_wire(Error(error.code, error.message))))
        await ws.close(close_code(error), error.message[:120])


def _admit(
    ws: WebSocket,
    offered: list[str],
    scheduler: Scheduler,
    settings: Settings,
    auth: Authenticator,
    connects: ConnectLimits,
    draining: asyncio.Event | None,
    can_record: bool,
) -> Stream:
    token = ws.query_params.get("access_token") or subprotocol_token(offered)
    principal = authorize(ws, token, settings, auth, connects, draining)
    options = parse_options(ws.query_params, scheduler.model.languages)
    if options.record and not can_record:
        raise InvalidRequestError("record=true needs the transcript index; this server runs with --no-index")
    return scheduler.open(options, asyncio.get_running_loop(), principal.tenant)

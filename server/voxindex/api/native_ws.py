"""``GET /v1/stream``: the native streaming protocol over one WebSocket.

Shape (vLLM's async front end): one task pumps the stream's events to the socket, the
handler's own loop reads frames into the stream; whichever side ends first ends the
other, and ``finally`` always releases the stream so the engine forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voxindex.api.auth import Authenticator, AuthError, ForbiddenError
from voxindex.api.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
    SUBPROTOCOL,
    parse_control,
    parse_options,
    subprotocol_token,
    to_wire,
)
from voxindex.audio import PcmDecoder
from voxindex.config import Settings
from voxindex.engine.events import Closed, Error, Event, Ready
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.stream import Stream
from voxindex.errors import CapacityError, InvalidRequestError

log = logging.getLogger("voxindex.api")


async def native_stream(ws: WebSocket, scheduler: Scheduler, settings: Settings, auth: Authenticator) -> None:
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        principal = auth.authenticate(
            ws.headers.get("authorization"), ws.query_params.get("access_token") or subprotocol_token(offered)
        ).require("transcribe")
    except AuthError as e:
        await _refuse(ws, Error(e.code, e.message), CLOSE_UNAUTHENTICATED)
        return
    except ForbiddenError as e:
        await _refuse(ws, Error(e.code, e.message), CLOSE_FORBIDDEN)
        return
    try:
        options = parse_options(ws.query_params, scheduler.wm.multilingual)
    except InvalidRequestError as e:
        await _refuse(ws, Error(e.code, e.message), CLOSE_POLICY)
        return
    try:
        stream = scheduler.open(options, asyncio.get_running_loop(), principal.tenant)
    except CapacityError as e:
        await _refuse(ws, Error(e.code, e.message), CLOSE_TRY_AGAIN)
        return
    await _send(ws, Ready(stream.id, scheduler.wm.name, options.sample_rate))
    pump = asyncio.create_task(_pump_events(ws, stream))
    reader = asyncio.create_task(_read_frames(ws, stream, scheduler, settings))
    try:
        done, _ = await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and reader.exception() is None and reader.result() and not pump.done():
            await pump  # the client said close: the pump ends after `closed`
    finally:
        for task in (pump, reader):
            task.cancel()
        if not stream.is_finished:
            stream.abort()
        scheduler.wake()
        if ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_NORMAL)


async def _read_frames(ws: WebSocket, stream: Stream, scheduler: Scheduler, settings: Settings) -> bool:
    """Read until the client sends ``close`` or idles out (True: `closed` will follow) or goes
    away (False: the stream is aborted, nothing more is sent)."""
    pcm = PcmDecoder(stream.options.encoding, stream.options.sample_rate)
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), timeout=settings.idle_timeout_s)
        except TimeoutError:
            stream.emit(Error("idle_timeout", f"no message for {settings.idle_timeout_s:g} s; closing"))
            stream.request_close()
            scheduler.wake()
            return True
        if message["type"] == "websocket.disconnect":
            stream.abort()
            scheduler.wake()
            return False
        data = message.get("bytes")
        if data is not None:
            if len(data) > settings.max_frame_bytes:
                await _refuse(
                    ws,
                    Error(
                        "frame_too_large",
                        f"audio frame of {len(data)} bytes exceeds {settings.max_frame_bytes}",
                    ),
                    CLOSE_TOO_BIG,
                )
                stream.abort()
                return False
            await stream.room.wait()  # backpressure: a client faster than the engine waits here
            samples = pcm.push(data)
            if samples.size:
                stream.push_audio(samples)
                scheduler.wake()
            continue
        try:
            kind = parse_control(message.get("text") or "")
        except InvalidRequestError as e:
            stream.emit(Error(e.code, e.message))
            continue
        if kind == "flush":
            stream.request_flush()
        elif kind == "close":
            tail = pcm.flush()
            if tail.size:
                stream.push_audio(tail)
            if pcm.leftover:
                stream.emit(
                    Error("bad_audio", f"stream ended inside a sample: {pcm.leftover} byte(s) dropped")
                )
            stream.request_close()
            scheduler.wake()
            return True
        scheduler.wake()


async def _pump_events(ws: WebSocket, stream: Stream) -> None:
    while True:
        event = await stream.events.get()
        await _send(ws, event)
        if isinstance(event, Closed):
            await ws.close(CLOSE_NORMAL)
            return
        if isinstance(event, Error) and event.code == "engine_error":
            await ws.close(CLOSE_INTERNAL, event.message[:120])
            return


async def _send(ws: WebSocket, event: Event) -> None:
    await ws.send_text(json.dumps(to_wire(event)))


async def _refuse(ws: WebSocket, error: Error, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await _send(ws, error)
        await ws.close(code, error.message[:120])

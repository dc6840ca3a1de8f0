"""One admitted stream served over one WebSocket, whatever the wire protocol.

Shape (vLLM's async front end): one task pumps the stream's events to the socket, the
handler's own loop reads frames into the stream; whichever side ends first ends the other,
and ``finally`` always releases the stream so the engine forgets it. A protocol adapter
only supplies a ``Codec``: how its text frames become controls and how internal events
become its messages. Limits (frame size, idle time, duration, pace) hold for every protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voxindex.api.auth import Authenticator, ForbiddenError, Principal
from voxindex.api.limits import ConnectLimits, client_ip, origin_allowed
from voxindex.api.protocol import (
    CLOSE_FRAME_TOO_LARGE,
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN,
    Append,
    Configure,
    Control,
    ProtocolViolation,
)
from voxindex.api.services import Services
from voxindex.audio import SAMPLE_RATE, Float32Array, PcmDecoder
from voxindex.config import Settings
from voxindex.engine.events import Closed, Configured, Error, Event
from voxindex.engine.prompting import PromptUpdate
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.stream import Stream
from voxindex.errors import CapacityError, InvalidRequestError, NotReadyError, VoxError
from voxindex.index.stream_audio import OpusWriter, StreamAudio
from voxindex.logs import log_context
from voxindex.metrics import Metrics

log = logging.getLogger("voxindex.api")


class Codec(Protocol):
    """A wire protocol's view of the internal event model."""

    def control(self, text: str) -> Control:
        """A client text frame → a control. ProtocolViolation ends the stream (4400);
        InvalidRequestError is reported and the stream goes on."""
        ...

    def render(self, event: Event) -> list[dict[str, Any]]:
        """The messages (zero or more) that tell the client about ``event``."""
        ...


async def ready(ws: WebSocket, refuse: Callable[[WebSocket, VoxError], Awaitable[None]]) -> Services | None:
    """The running server's services, or None once the stream is refused (``refuse``: the
    protocol's way) with ``not_ready`` while the server starts."""
    services: Services | None = ws.app.state.services
    if services is None:
        ws.app.state.metrics.streams_refused.labels("not_ready").inc()
        await refuse(ws, NotReadyError("the server is starting; connect again shortly"))
    return services


def authorize(
    ws: WebSocket,
    token: str | None,
    settings: Settings,
    auth: Authenticator,
    connects: ConnectLimits,
    draining: asyncio.Event | None = None,
) -> Principal:
    """Who may open a stream: Origin → handshakes per IP → credential → handshakes per tenant.

    Cheap refusals come before the credential is verified, so a flood of anonymous handshakes
    costs little; each step raises a VoxError the protocol answers with its documented code.
    """
    if draining is not None and draining.is_set():
        raise CapacityError("the server is shutting down; connect again (to another replica)")
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, settings.allowed_origins):
        raise ForbiddenError(f"origin {origin[:100]!r} is not allowed" if origin else "origin not allowed")
    connects.hit_ip(client_ip(ws))
    principal = auth.authenticate(ws.headers.get("authorization"), token).require("transcribe")
    connects.hit_tenant(principal.tenant)
    return principal


def opened(ws: WebSocket, stream: Stream, protocol: str, metrics: Metrics | None) -> None:
    if metrics is not None:
        metrics.streams_opened.labels(protocol).inc()
    log.info(
        "stream opened (%s, %d Hz %s)",
        protocol,
        stream.options.sample_rate,
        stream.options.encoding,
        extra={"stream_id": stream.id, "tenant": stream.tenant, "client": client_ip(ws)},
    )


def refused(ws: WebSocket, error: VoxError, metrics: Metrics | None) -> None:
    if metrics is not None:
        metrics.streams_refused.labels(error.code).inc()
    log.info("stream refused: %s", error.message, extra={"client": client_ip(ws), "code": error.code})


async def serve_stream(
    ws: WebSocket,
    stream: Stream,
    scheduler: Scheduler,
    settings: Settings,
    codec: Codec,
    pcm: PcmDecoder,
    draining: asyncio.Event | None = None,
    audio: StreamAudio | None = None,
    first: Append | None = None,
    max_text_bytes: int | None = None,
) -> None:
    """Serve an admitted stream on an accepted socket until it ends, then release it.
    ``draining`` set (graceful shutdown) finalizes the stream, sends its finals, closes 1012.
    ``audio``: where a ``record=true`` stream's audio is kept. ``first``: audio the protocol
    read before the stream opened, taken before the rest. ``max_text_bytes``: the largest text message
    (``settings.max_control_bytes`` unless a protocol carries audio in text)."""
    with log_context(stream.id, stream.tenant):  # the tasks below copy this context
        tap = AudioTap(stream, audio if stream.options.record else None)
        pump = asyncio.create_task(_pump_events(ws, stream, codec))
        text_limit = max_text_bytes or settings.max_control_bytes
        reader = asyncio.create_task(
            _read_frames(ws, tap, scheduler, settings, codec, pcm, draining, text_limit, first)
        )
    code: int | None = None
    try:
        done, _ = await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
        code = reader.result() if reader in done and reader.exception() is None else None
        if code is not None and not pump.done():
            await pump  # the stream is being finalized: the pump ends after `closed`
        if code is not None and pump.exception() is None and pump.result():
            with contextlib.suppress(Exception):
                await ws.close(code)
    except Exception:  # a bug: log it, but never let it out of the handler
        log.exception("stream %s handler failed", stream.id)
    finally:
        for task in (pump, reader):
            task.cancel()
        tap.close()
        if not stream.is_finished:
            stream.abort()  # what was heard is still finalized and stored
        scheduler.wake()
        if ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_INTERNAL)
        log.info(
            "stream ended after %.1f s of audio, %d finals (%s)",
            stream.now,
            stream.finals,
            f"close {code}" if code is not None else "client gone",
            extra={"stream_id": stream.id, "tenant": stream.tenant},
        )


class AudioTap:
    """The stream's way in for audio: every sample it is given is also kept when it records
    (``record=true``, index/stream_audio.py). Failing to keep it (a full disk) is reported once,
    as ``recording_unavailable``; the stream and its transcript go on untouched."""

    def __init__(self, stream: Stream, audio: StreamAudio | None) -> None:
        self.stream = stream
        self._audio = audio
        self._writer: OpusWriter | None = None
        if audio is not None:
            try:
                self._writer = audio.open(stream.id)
            except OSError as e:  # PyAV's errors are OSErrors too
                self._failed(e)

    def push(self, samples: Float32Array) -> None:
        self.stream.push_audio(samples)
        if self._writer is not None:
            try:
                self._writer.write(samples)
            except OSError as e:
                self._failed(e)

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as e:
                self._failed(e)
        if self._audio is not None:
            self._audio.finished(self.stream.id)
        self._writer = None

    def _failed(self, e: OSError) -> None:
        kept = self._writer.samples / SAMPLE_RATE if self._writer is not None else 0.0
        self._writer = None
        reason = e.strerror or str(e)
        log.warning("stream audio not kept past %.1f s: %s", kept, reason)
        self.stream.emit(
            Error(
                "recording_unavailable",
                f"the stream's audio could not be kept after {kept:.1f} s ({reason}); transcription goes on",
            )
        )


async def _read_frames(
    ws: WebSocket,
    tap: AudioTap,
    scheduler: Scheduler,
    settings: Settings,
    codec: Codec,
    pcm: PcmDecoder,
    draining: asyncio.Event | None,
    max_text_bytes: int,
    first: Append | None,
) -> int | None:
    """Read the client's frames into the stream until the stream must end.

    Returns the close code to send once the stream is finalized and its end reported (1000
    when the client said close; 4408, 4413, 4400, 4429 when a limit or the protocol ended
    it), or None when the client went away (the stream is aborted; nothing more is sent).
    Audio already received is never thrown away: every ending finalizes and stores it.
    """
    stream = tap.stream
    audio_s = 0.0

    def end(code: int, error: Error | None = None) -> int:
        if error is not None:
            stream.emit(error)
        tail = pcm.flush()
        if tail.size:
            tap.push(tail)
        if pcm.leftover:
            stream.emit(Error("bad_audio", f"stream ended inside a sample: {pcm.leftover} byte(s) dropped"))
        stream.request_close()
        scheduler.wake()
        return code

    async def take(data: bytes) -> float:
        """Audio in: the seconds it holds at 16 kHz."""
        await stream.room.wait()  # backpressure: a client faster than the engine waits here
        samples = pcm.push(data)
        if samples.size:
            tap.push(samples)
            scheduler.wake()
            await _keep_pace(audio_s + samples.size / SAMPLE_RATE, stream.opened_at, settings)
        return samples.size / SAMPLE_RATE

    if first is not None:
        audio_s += await take(first.data)
    while True:
        age = time.monotonic() - stream.opened_at
        limit_left = settings.max_stream_s - max(age, audio_s)
        if limit_left <= 0:
            too_long = f"stream reached the limit of {settings.max_stream_s:g} s; closing"
            return end(CLOSE_RATE_LIMITED, Error("quota_exceeded", too_long))
        try:
            message = await receive(ws, min(settings.idle_timeout_s, limit_left), draining)
        except Draining:
            restart = "the server is restarting: this stream is finalized; reconnect to go on"
            return end(CLOSE_SERVICE_RESTART, Error("server_restarting", restart))
        except TimeoutError:
            if limit_left <= settings.idle_timeout_s:
                continue  # the stream's time is up: said at the top of the loop
            idle = f"no audio or keepalive for {settings.idle_timeout_s:g} s; closing"
            return end(CLOSE_IDLE, Error("idle_timeout", idle))
        if message["type"] == "websocket.disconnect":
            stream.abort()
            scheduler.wake()
            return None
        data = message.get("bytes")
        too_big = oversized(data, settings) if data is not None else None
        if too_big is not None:
            return end(CLOSE_FRAME_TOO_LARGE, too_big)
        text = message.get("text") or ""
        if data is None and len(text) > max_text_bytes:
            too_long = f"control message of {len(text)} characters exceeds {max_text_bytes}"
            return end(CLOSE_FRAME_TOO_LARGE, Error("frame_too_large", too_long))
        try:
            kind = codec.control(text) if data is None else None
        except ProtocolViolation as e:
            return end(CLOSE_PROTOCOL, Error(e.code, e.message))
        except InvalidRequestError as e:  # e.g. a message type from a newer client
            stream.emit(Error(e.code, e.message, getattr(e, "param", None), getattr(e, "event_id", None)))
            continue
        except Exception:  # a bug in a protocol adapter: logged, the client told, the stream goes on
            log.exception("a %d-character text message could not be handled", len(text))
            stream.emit(Error("internal_error", "the server could not handle that message (logged); go on"))
            continue
        if isinstance(kind, Append):
            data = kind.data
        if data is not None:
            audio_s += await take(data)
            continue
        if isinstance(kind, PromptUpdate):
            if kind.keyterms is not None:
                stream.set_keyterms(kind.keyterms)
            if kind.context is not None:
                stream.add_context(kind.context)
        elif isinstance(kind, Configure):
            if kind.error is None and kind.keyterms is not None:
                stream.set_keyterms(kind.keyterms)
            if kind.error is None and kind.turns is not None:
                stream.configure_turns(kind.turns)
            if kind.error is None and kind.context is not None:
                stream.add_context(kind.context)
            stream.emit(Configured(kind.keyterms, kind.turns, kind.error))
        elif kind == "flush":
            stream.request_flush()
        elif kind == "close":
            return end(CLOSE_NORMAL)
        scheduler.wake()


def oversized(frame: bytes, settings: Settings) -> Error | None:
    """The error that ends a stream sent a binary frame over ``max_frame_bytes`` (close 4413)."""
    if len(frame) <= settings.max_frame_bytes:
        return None
    return Error(
        "frame_too_large",
        f"audio frame of {len(frame)} bytes exceeds the limit of {settings.max_frame_bytes}",
    )


class Draining(Exception):
    """The server is shutting down: finish the stream now."""


async def receive(ws: WebSocket, timeout: float, draining: asyncio.Event | None) -> Message:
    """The next message; TimeoutError after ``timeout``; Draining once the server shuts down."""
    if draining is None:
        return await asyncio.wait_for(ws.receive(), timeout=timeout)
    if draining.is_set():
        raise Draining
    got = asyncio.ensure_future(ws.receive())
    drain = asyncio.ensure_future(draining.wait())
    done, _ = await asyncio.wait({got, drain}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if got in done:
        drain.cancel()
        return got.result()
    got.cancel()
    drain.cancel()
    if drain in done:
        raise Draining
    raise TimeoutError


async def _keep_pace(audio_s: float, opened_at: float, settings: Settings) -> None:
    """A client may send ``max_queue_s`` of audio at once, then ``max_audio_speed`` x real time.
    Past that the handler stops reading its socket for a while: TCP backpressure slows it down."""
    speed = settings.max_audio_speed
    if speed > 0:
        ahead = audio_s - settings.max_queue_s - speed * (time.monotonic() - opened_at)
        if ahead > 0:
            await asyncio.sleep(ahead / speed)


# errors after which the engine has ended the stream: the socket closes with this code
ENDING_ERRORS = {"engine_error": CLOSE_INTERNAL, "store_unavailable": CLOSE_TRY_AGAIN}


async def _pump_events(ws: WebSocket, stream: Stream, codec: Codec) -> bool:
    """Send the stream's events until `closed` (True: the handler closes the socket), an error
    that ended the stream (False: closed here, 1011 for the model, 1013 for the store) or the
    client is gone (False)."""
    while True:
        event = await stream.events.get()
        try:
            for message in codec.render(event):
                await ws.send_text(json.dumps(message))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return False
        if isinstance(event, Closed):
            return True
        if isinstance(event, Error) and event.code in ENDING_ERRORS:
            await ws.close(ENDING_ERRORS[event.code], event.message[:120])
            return False

"""One streaming session: send audio, iterate events; keepalives and reconnects are automatic.

    async with voxindex_client.connect("ws://127.0.0.1:8080", token=TOKEN) as s:
        await s.send(pcm16_bytes)
        await s.close()
        async for event in s:
            ...

If the connection drops (the server restarts, the network blips), the session connects again and
goes on: audio sent afterwards is a new server stream, and its event times are shifted by the
audio already sent, so times stay continuous. Refusals that retrying cannot fix (bad token,
missing scope, bad parameters) raise ``VoxindexError`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from ssl import SSLContext
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import websockets

from voxindex_client.events import Closed, Event, Ready, Reconnected, parse

FATAL_CLOSES = {4400: "invalid_request", 4401: "unauthenticated", 4403: "forbidden", 4413: "frame_too_large"}
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4}


RETRY_CLOSES = {1012, 1013}  # restarting; not ready or at capacity: another try may succeed


class VoxindexError(Exception):
    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.close_code = code, message, close_code


class Session:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        sample_rate: int = 16000,
        encoding: str = "pcm_s16le",
        interim_results: bool = True,
        endpointing_ms: int = 500,
        language: str | None = None,
        diarize: bool = False,
        keepalive_s: float = 5.0,
        reconnect: bool = True,
        max_retries: int = 5,
        retry_interval_s: float = 1.0,
        ssl: SSLContext | None = None,
    ) -> None:
        base = url.rstrip("/")
        if base.startswith("http"):
            base = "ws" + base[len("http") :]
        if not base.endswith("/v1/stream"):
            base += "/v1/stream"
        query: dict[str, Any] = {
            "sample_rate": sample_rate,
            "encoding": encoding,
            "interim_results": str(interim_results).lower(),
            "endpointing_ms": endpointing_ms,
        }
        if language:
            query["language"] = language
        if diarize:  # labels restart with each new stream: a reconnect starts a new one
            query["diarize"] = "true"
        self.url = f"{base}?{urlencode(query)}"
        self.token = token
        self.ssl = ssl  # for wss:// with a private CA; default: the system's trust store
        self.bytes_per_second = sample_rate * BYTES_PER_SAMPLE[encoding]
        self.keepalive_s = keepalive_s
        self.reconnect = reconnect
        self.max_retries = max_retries
        self.retry_interval_s = retry_interval_s
        self.stream_id = ""
        self.offset = 0.0  # audio seconds sent on earlier connections
        self._sent = 0  # bytes sent on this connection
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._closing = False
        self._done = False
        self._keepalive: asyncio.Task[None] | None = None
        self._pending: list[Event] = []

    # ---------------- lifecycle ----------------
    async def __aenter__(self) -> Session:
        await self._connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        extra: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
        self._ws = await websockets.connect(self.url, additional_headers=headers, max_size=None, **extra)
        first = json.loads(await self._ws.recv())
        if first.get("type") != "ready":
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.recv()
            code = self._ws.close_code
            raise VoxindexError(first.get("code", "refused"), first.get("message", ""), code)
        ready = parse(first)
        assert isinstance(ready, Ready)
        self.stream_id = ready.stream_id
        self._pending.append(ready)
        self._sent = 0
        self._connected.set()
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            with contextlib.suppress(websockets.ConnectionClosed):
                if self._connected.is_set():
                    await self._ws.send(json.dumps({"type": "keepalive"}))

    # ---------------- sending ----------------
    async def send(self, audio: bytes) -> None:
        """Send audio (any size; frames over 64 KiB are split)."""
        for i in range(0, len(audio), 32_000):
            await self._send(audio[i : i + 32_000])

    async def _send(self, chunk: bytes) -> None:
        while True:
            await self._connected.wait()
            ws = self._ws
            try:
                await ws.send(chunk)
                self._sent += len(chunk)
                return
            except websockets.ConnectionClosed:
                if self._ws is ws:  # not yet replaced: the reader reconnects; then send again
                    self._connected.clear()
                await asyncio.sleep(0.05)

    async def flush(self) -> None:
        """Finalize what has been said so far without waiting for silence."""
        await self._connected.wait()
        await self._ws.send(json.dumps({"type": "flush"}))

    async def close(self) -> None:
        """End of audio: the remaining finals, then ``Closed``, end the iteration."""
        self._closing = True
        await self._connected.wait()
        await self._ws.send(json.dumps({"type": "close"}))

    # ---------------- receiving ----------------
    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while not self._done:
            while self._pending:
                yield self._pending.pop(0)
            try:
                raw = await self._ws.recv()
            except websockets.ConnectionClosed:
                await self._after_close()
                continue
            event = parse(json.loads(raw), self.offset, self.stream_id)
            if event is None:
                continue
            if isinstance(event, Closed):
                self._done = True
            yield event
        while self._pending:
            yield self._pending.pop(0)

    async def _after_close(self) -> None:
        code = self._ws.close_code
        if code in FATAL_CLOSES:
            self._done = True
            raise VoxindexError(FATAL_CLOSES[code], self._ws.close_reason or "refused", code)
        if self._closing and code == 1000:
            self._done = True
            return
        if not self.reconnect:
            self._done = True
            raise VoxindexError("connection_lost", f"the connection closed ({code})", code)
        self._connected.clear()
        self.offset += self._sent / self.bytes_per_second
        for attempt in range(self.max_retries):
            await asyncio.sleep(self.retry_interval_s * (attempt + 1))
            try:
                await self._connect()
            except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed):
                continue
            except VoxindexError as e:  # a replica starting up, full or draining: try again
                if e.close_code in RETRY_CLOSES:
                    continue
                self._done = True
                raise
            self._pending.append(Reconnected(self.stream_id, self.offset))
            if self._closing:  # the close was lost with the connection: say it again
                await self._ws.send(json.dumps({"type": "close"}))
            return
        self._done = True
        raise VoxindexError("connection_lost", f"could not reconnect after {self.max_retries} attempts", code)


def connect(url: str, **options: Any) -> Session:
    """A session to a voxindex server (``ws(s)://`` or ``http(s)://`` base URL)."""
    return Session(url, **options)

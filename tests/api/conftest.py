"""A real voxindex server on loopback (uvicorn in a thread), sharing the session's model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
import websockets

from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel
from voxindex.serve import create_app, uvicorn_options, wait_ready


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    app: Any

    @property
    def ws(self) -> str:
        return self.url.replace("http", "ws", 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    settings: Settings, model: WhisperModel, port: int | None = None, ready: bool = True
) -> tuple[Server, uvicorn.Server, threading.Thread]:
    """Serve in a thread; return once it listens and (``ready``) has warmed up."""
    port = port or free_port()
    if settings.data_dir == Settings().data_dir:  # never write ./data from a test
        settings = replace(settings, data_dir=settings.cache_dir / "data")
    settings = replace(settings, port=port, log_level="warning")
    app = create_app(settings, model=model)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    if ready:
        wait_ready(app, timeout=60)
    return Server(f"http://127.0.0.1:{port}", app), server, thread


class ServerProcess:
    """A real ``voxindex serve`` process on a free loopback port; the constructor returns once
    it is ready (``ready=False``: as soon as it listens). Its output goes to ``self.log``."""

    def __init__(
        self,
        data_dir: Path,
        cache_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        ready: bool = True,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        environ = {**os.environ, "VOXINDEX_CACHE_DIR": str(cache_dir), **(env or {})}
        command = [sys.executable, "-m", "voxindex.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--data-dir", str(data_dir), *args],
            env=environ,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.wait("/readyz" if ready else "/healthz")

    def wait(self, path: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.01)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    def health(self) -> dict[str, object]:
        return dict(httpx.get(f"{self.url}/health", timeout=10).json())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """``audio`` (16 kHz float) as a mono PCM16 WAV file at ``path``."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm16(audio))
    return path


def frames_of(data: bytes, size: int = 32000) -> list[bytes]:
    """``data`` in frames under the server's frame limit (one second of 16 kHz PCM16 each)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass
class Session:
    """Everything one client saw: messages in order, with arrival times, and the close code."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    close_code: int | None = None
    audio_seconds: float = 0.0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def final_text(self) -> str:
        return " ".join(m["text"] for m in self.of("final"))


async def stream_audio(
    url: str,
    audio: np.ndarray,
    *,
    speed: float = 1.0,
    frame_s: float = 0.1,
    params: str = "",
    end: str = "close",
    frames: list[bytes] | None = None,
) -> Session:
    """Send ``audio`` as PCM16 at ``speed`` × real time, then ``end`` ("close" or "none"); collect all."""
    session = Session(audio_seconds=audio.size / 16000)
    data = pcm16(audio)
    step = int(16000 * frame_s) * 2
    chunks = frames if frames is not None else [data[i : i + step] for i in range(0, len(data), step)]
    async with websockets.connect(f"{url}/v1/stream{params}", max_size=None) as ws:
        t0 = time.monotonic()

        async def send() -> None:
            sent = 0
            for chunk in chunks:
                await ws.send(chunk)
                sent += len(chunk)
                await asyncio.sleep(max(0.0, t0 + sent / 32000 / speed - time.monotonic()))
            if end == "close":
                await ws.send(json.dumps({"type": "close"}))

        sender = asyncio.create_task(send())
        try:
            async for raw in ws:
                session.messages.append(json.loads(raw))
                session.arrivals.append(time.monotonic() - t0)
        except websockets.ConnectionClosed:
            pass
        session.close_code = ws.close_code
        sender.cancel()
    return session

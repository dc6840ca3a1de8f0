"""``voxindex stream FILE | --mic``: stream audio to a server and show the transcript as it comes.

On a terminal the interim text updates in place (after a progress bar for files) and each
final is printed as a line with its times. Piped, only finals go to stdout; the progress bar
goes to stderr, in place, where stderr is a terminal (``voxindex stream talk.wav > out.txt``),
and nowhere where it is not (a script's log holds no progress lines). Ctrl-C stops sending and
closes the stream cleanly: the remaining finals are still printed (exit 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

import numpy as np

from voxindex.api.transcripts import clock
from voxindex.audio import SAMPLE_RATE, decode_file
from voxindex.errors import AudioDecodeError

FRAME_S = 0.1
EXIT_INTERRUPTED = 130


def stream(
    url: str,
    token: str | None,
    path: Path | None,
    *,
    fast: bool = False,
    mic: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    import voxindex_client

    if mic:
        source = _microphone(err)
        if source is None:
            return 2
        total = None
    else:
        assert path is not None
        try:
            audio = decode_file(path)
        except AudioDecodeError as e:
            print(f"error: {e.code}: {e.message}", file=err)
            return 2
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        total = len(pcm) / 2 / SAMPLE_RATE
        source = _file_frames(pcm, paced=not fast)
    view = _View(out, err, total)
    try:
        return asyncio.run(_run(url, token, source, view))
    except voxindex_client.VoxindexError as e:
        view.clear()
        print(f"error: {e.code}: {e.message}", file=err)
        return 2 if e.code in ("unauthenticated", "forbidden", "invalid_request") else 1
    except OSError as e:
        print(f"error: unreachable: {url}: {e}", file=err)
        return 1


async def _run(url: str, token: str | None, source: AsyncIterator[bytes], view: _View) -> int:
    import voxindex_client

    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    async with voxindex_client.connect(url, token=token) as session:

        async def send() -> None:
            async for frame in source:
                if interrupted.is_set():
                    break
                await session.send(frame)
                view.advance(len(frame) / 2 / SAMPLE_RATE)
            await session.close()

        sender = asyncio.create_task(send())
        stopper = asyncio.create_task(interrupted.wait())
        async for event in session:
            if isinstance(event, voxindex_client.Interim):
                view.interim(event.text)
            elif isinstance(event, voxindex_client.Final):
                view.final(event.start, event.end, event.text)
            elif isinstance(event, voxindex_client.Error):
                view.note(f"server: {event.code}: {event.message}")
            elif isinstance(event, voxindex_client.Reconnected):
                view.note(f"reconnected (stream {event.stream_id[:8]}, from {clock(event.offset)})")
            if stopper.done() and not sender.done():
                await sender  # stops at the next frame and closes the stream
        sender.cancel()
        stopper.cancel()
    view.clear()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.remove_signal_handler(signal.SIGINT)
    return EXIT_INTERRUPTED if interrupted.is_set() else 0


async def _file_frames(pcm: bytes, paced: bool) -> AsyncIterator[bytes]:
    step = int(FRAME_S * SAMPLE_RATE) * 2
    started = time.monotonic()
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]
        if paced:
            await asyncio.sleep(max(0.0, started + (i + step) / 2 / SAMPLE_RATE - time.monotonic()))
        else:
            await asyncio.sleep(0)


def _microphone(err: TextIO) -> AsyncIterator[bytes] | None:
    try:
        import sounddevice

        sounddevice.check_input_settings(channels=1, samplerate=SAMPLE_RATE, dtype="int16")
    except Exception as e:  # no PortAudio, no device, or it cannot record 16 kHz mono
        print(f"error: no_input_device: cannot record from a microphone here ({e})", file=err)
        return None

    async def frames() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def callback(data: bytes, frames: int, when: object, status: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

        blocksize = int(FRAME_S * SAMPLE_RATE)
        with sounddevice.RawInputStream(
            samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=blocksize, callback=callback
        ):
            while True:
                yield await queue.get()

    return frames()


class _View:
    """What the user sees: finals as lines; interim text and progress in place on a terminal."""

    def __init__(self, out: TextIO, err: TextIO, total: float | None) -> None:
        self.out, self.err, self.total = out, err, total
        self.tty = out.isatty()
        self.err_tty = not self.tty and err.isatty()  # the bar alone, on stderr
        self.sent = 0.0
        self._line = ""

    def _progress(self) -> str:
        if not self.total:
            return ""
        share = min(1.0, self.sent / self.total + 1e-9)
        done = int(share * 20)
        bar = "#" * done + "." * (20 - done)
        return f"[{bar}] {share:4.0%} {clock(self.sent)[3:8]}/{clock(self.total)[3:8]} "

    def advance(self, seconds: float) -> None:
        """Audio sent: the progress bar moves (on whichever of stdout and stderr is a terminal)."""
        self.sent += seconds
        prefix = self._progress()
        if self.tty and not self._line:
            print("\r\x1b[K" + prefix, end="", file=self.out, flush=True)
        elif self.err_tty and prefix:
            end = "\n" if self.sent >= (self.total or 0.0) else ""
            print("\r\x1b[K" + prefix, end=end, file=self.err, flush=True)

    def interim(self, text: str) -> None:
        prefix = self._progress()
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self._line = (prefix + "… " + text)[-width:]
            print("\r\x1b[K" + self._line, end="", file=self.out, flush=True)

    def final(self, start: float, end: float, text: str) -> None:
        self.clear()
        print(f"[{clock(start)} --> {clock(end)}] {text}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        self.clear()
        print(("\r\x1b[K" if self.err_tty else "") + text, file=self.err, flush=True)

    def clear(self) -> None:
        if self.tty and self._line:
            print("\r\x1b[K", end="", file=self.out, flush=True)
            self._line = ""

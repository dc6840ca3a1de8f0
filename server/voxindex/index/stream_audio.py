"""A live stream's audio, kept on request (``record=true``): Opus in Ogg under ``<data-dir>/audio``.

The file's timeline is the stream's: sample n of the stream is at n / 16000 s in the file (the
Ogg header's pre-skip hides the encoder's delay), so a final's ``start`` is where to play it.
Opus at 24 kbit/s keeps speech at about 11 MB an hour (BENCHMARKS.md "Recorded stream audio").
The muxer writes pages as it goes: a crash leaves a playable file up to its last page.

A file lives as long as its stream and at most ``retention_s`` after its last write: the sweeper
deletes older ones (the transcript stays), ``delete`` removes it with the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av
import numpy as np

from voxindex.audio import SAMPLE_RATE, Float32Array

log = logging.getLogger("voxindex.index")

BIT_RATE = 24_000  # Opus "voip" quality for one voice channel
SUFFIX = ".ogg"
MEDIA_TYPE = "audio/ogg"
PAGE_BYTES = 4096  # written to the file as soon as this much is encoded (~1.4 s)


class OpusWriter:
    """Encodes 16 kHz float samples as they come; ``close`` flushes the encoder and the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = 0
        # unbuffered, and small I/O buffers: a full disk is known within a page or two, and a
        # crash loses about a second of audio, not the 10 s a default 32 KB buffer holds
        self._file = path.open("wb", buffering=0)
        self._out = av.open(self._file, "w", format="ogg", buffer_size=PAGE_BYTES)
        stream = self._out.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = BIT_RATE
        self._stream = stream
        self._fifo = av.AudioFifo()
        self._frame = 0  # the encoder's frame size, known once it is open

    def write(self, samples: Float32Array) -> None:
        pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.samples
        self.samples += pcm.size
        self._fifo.write(frame)
        if not self._frame:
            self._stream.codec_context.open(strict=False)
            self._frame = self._stream.codec_context.frame_size or 320
        while self._fifo.samples >= self._frame:
            self._encode(self._fifo.read(self._frame))

    def close(self) -> None:
        try:
            rest = self._fifo.read()
            if rest is not None:
                self._encode(rest)
            self._encode(None)
        finally:
            try:
                self._out.close()
            finally:
                self._file.close()

    def _encode(self, frame: av.AudioFrame | None) -> None:
        for packet in self._stream.encode(frame):
            self._out.mux(packet)


class StreamAudio:
    """Where kept stream audio lives, and how long (``retention_s``, from its last write)."""

    def __init__(self, root: Path, retention_s: float) -> None:
        self.root = root
        self.retention_s = retention_s
        self._writing: set[str] = set()  # open files the sweeper leaves alone
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, stream_id: str) -> Path:
        return self.root / f"{stream_id}{SUFFIX}"

    def has(self, stream_id: str) -> bool:
        return self.path(stream_id).is_file()

    def open(self, stream_id: str) -> OpusWriter:
        """A writer for a new stream's audio; OSError if the directory cannot take the file."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._writing.add(stream_id)
        try:
            return OpusWriter(self.path(stream_id))
        except BaseException:
            self.finished(stream_id)
            raise

    def finished(self, stream_id: str) -> None:
        """The stream ended: its file is swept ``retention_s`` after its last write."""
        with self._lock:
            self._writing.discard(stream_id)

    def delete(self, stream_id: str) -> bool:
        path = self.path(stream_id)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        return existed

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete every finished file older than the retention; returns their stream ids."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        gone = []
        for path in self.root.glob(f"*{SUFFIX}"):
            stream_id = path.name.removesuffix(SUFFIX)
            with self._lock:
                if stream_id in self._writing:
                    continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    gone.append(stream_id)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.warning("kept audio %s could not be removed: %s", path, e)
        if gone:
            log.info(
                "removed the audio of %d stream(s) past the retention of %g s", len(gone), self.retention_s
            )
        return gone

    def start(self) -> None:
        """Sweep now, then every tenth of the retention (1 s .. 1 h), in a daemon thread."""
        every = min(3600.0, max(1.0, self.retention_s / 10))

        def run() -> None:
            while not self._stop.is_set():
                self.sweep()
                self._stop.wait(every)

        self._thread = threading.Thread(target=run, name="voxindex-audio-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

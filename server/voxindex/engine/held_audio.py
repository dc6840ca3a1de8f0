"""The audio a stream's utterance still needs, on the stream's own timeline."""

from __future__ import annotations

import numpy as np

from voxindex.audio import SAMPLE_RATE, Float32Array


class HeldAudio:
    """``buffer[lo:hi]`` from stream time ``start``: appends amortise to O(new samples) (a new,
    larger buffer only when the old one is full), and dropping the front is a slice."""

    def __init__(self) -> None:
        self._buffer: Float32Array = np.zeros(0, np.float32)
        self._lo = self._hi = 0
        self.start = 0.0  # stream time of samples[0]
        self.received = 0  # samples ever appended: stream time × 16 000

    @property
    def samples(self) -> Float32Array:
        return self._buffer[self._lo : self._hi]

    @property
    def size(self) -> int:
        return self._hi - self._lo

    @property
    def now(self) -> float:
        """Stream time of the newest sample."""
        return self.received / SAMPLE_RATE

    def append(self, samples: Float32Array) -> None:
        n = samples.size
        if self._hi + n > self._buffer.size:  # a new buffer: views handed out stay valid
            held = self._hi - self._lo
            grown = np.empty(max(2 * (held + n), 5 * SAMPLE_RATE), np.float32)
            grown[:held] = self.samples
            self._buffer, self._lo, self._hi = grown, 0, held
        self._buffer[self._hi : self._hi + n] = samples
        self._hi += n
        self.received += n

    def drop_before(self, t: float) -> None:
        """Forget audio before stream time ``t`` (bounded memory)."""
        cut = round((t - self.start) * SAMPLE_RATE)
        if cut > 0:
            self._lo += cut
            if self._lo > self._hi:  # dropped past what arrived: the next audio starts later
                self._buffer, self._lo, self._hi = np.zeros(0, np.float32), 0, 0
            self.start += cut / SAMPLE_RATE

    def between(self, start: float, end: float) -> Float32Array:
        a = max(0, round((start - self.start) * SAMPLE_RATE))
        b = max(a, round((end - self.start) * SAMPLE_RATE))
        return self.samples[a:b]

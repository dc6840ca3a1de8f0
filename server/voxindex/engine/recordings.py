"""Background work for the engine: uploaded recordings, read in windows when live streams leave room.

A recording is decoded and its speech found (Silero VAD) before it reaches the engine; here it
is a list of windows of at most ``WINDOW_S`` that start and end in silence, so no word is cut.
The scheduler takes windows with ``take`` for the batch slots live streams leave empty and
hands the readings back with ``complete``; windows are committed in order, each with the audio
time done, so a restart resumes after the last committed window without duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.events import Final
from voxindex.engine.policy import join_words
from voxindex.engine.reading import Job, Reading
from voxindex.engine.speakers.timeline import Timeline, dominant
from voxindex.engine.types import Word
from voxindex.engine.vad import CHUNK_S
from voxindex.errors import StoreUnavailableError

log = logging.getLogger("voxindex.engine")

WINDOW_S = 28.0  # audio per window: Whisper reads 30 s, and the edges stay in silence
MIN_CUT_S = 18.0  # a window running into unbroken speech is cut at its quietest point after this
SPEECH_PROBABILITY = 0.5
MERGE_GAP_S = 0.6  # pauses shorter than this stay inside one speech region
PAD_S = 0.2
PAUSE_SPLITS_SEGMENT_S = 1.0
STORE_RETRY_S = 5.0  # the store refused a window: recordings wait this long before trying again


@dataclass(frozen=True)
class Window:
    start: float
    end: float


def plan_windows(speech: npt.NDArray[np.float32], duration: float) -> list[Window]:
    """Windows of at most WINDOW_S covering every stretch of speech; edges fall in silence
    (or, inside unbroken speech, at the least speech-like 32 ms chunk)."""
    regions = _speech_regions(speech, duration)
    windows: list[Window] = []
    start: float | None = None
    end = 0.0
    for a, b in regions:
        if start is not None and b - start <= WINDOW_S:
            end = b
            continue
        if start is not None:
            windows.append(Window(start, end))
        start, end = a, b
        while end - start > WINDOW_S:  # unbroken speech: cut at its quietest point
            lo, hi = int((start + MIN_CUT_S) / CHUNK_S), int((start + WINDOW_S) / CHUNK_S)
            cut = (lo + int(np.argmin(speech[lo:hi]))) * CHUNK_S if hi > lo else start + WINDOW_S
            windows.append(Window(start, cut))
            start = cut
    if start is not None:
        windows.append(Window(start, end))
    return [Window(round(w.start, 3), round(w.end, 3)) for w in windows if w.end - w.start > 0.1]


def _speech_regions(speech: npt.NDArray[np.float32], duration: float) -> list[tuple[float, float]]:
    voiced = speech >= SPEECH_PROBABILITY
    regions: list[tuple[float, float]] = []
    i = 0
    while i < voiced.size:
        if not voiced[i]:
            i += 1
            continue
        j = i
        while j < voiced.size and voiced[j]:
            j += 1
        a, b = max(0.0, i * CHUNK_S - PAD_S), min(duration, j * CHUNK_S + PAD_S)
        if regions and a - regions[-1][1] < MERGE_GAP_S:
            regions[-1] = (regions[-1][0], b)
        else:
            regions.append((a, b))
        i = j
    return regions


def split_segments(words: list[Word]) -> list[list[Word]]:
    """Sentences, or stretches between pauses of a second or more: the unit a search hit shows."""
    segments: list[list[Word]] = []
    current: list[Word] = []
    for w in words:
        if current and w.start - current[-1].end >= PAUSE_SPLITS_SEGMENT_S:
            segments.append(current)
            current = []
        current.append(w)
        if w.word.rstrip().endswith((".", "?", "!")):
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return segments


class RecordingSink(Protocol):
    """Where a recording's windows go (the store). Called on the engine thread."""

    def commit_window(self, recording_id: str, finals: list[Final], done_s: float, model: str) -> None: ...

    def finish_recording(self, recording_id: str, language: str | None) -> None: ...

    def fail_recording(self, recording_id: str, reason: str) -> None: ...


@dataclass
class RecordingWork:
    id: str
    audio: Float32Array
    windows: list[Window]
    language: str | None = None
    next_window: int = 0  # the next window to hand out
    segments: int = 0  # segments committed so far (their index continues from here)
    cancelled: bool = False
    detected: str | None = None
    speakers: Timeline | None = None  # the whole file's speaker labels (engine/speakers/)
    task: str = "transcribe"  # or "translate": English text

    @property
    def done(self) -> bool:
        return self.next_window >= len(self.windows)


Taken = tuple[RecordingWork, Window, Job]  # a window of a recording, as a job for the executor


@dataclass
class Recordings:
    sink: RecordingSink
    model: str
    _queue: deque[RecordingWork] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _paused_until: float = 0.0  # the store refused a window: no windows before this time

    def submit(self, work: RecordingWork) -> None:
        """Queue a prepared recording (any thread). One without windows is finished at once."""
        with self._lock:
            self._queue.append(work)

    def cancel(self, recording_id: str) -> None:
        with self._lock:
            for work in self._queue:
                if work.id == recording_id:
                    work.cancelled = True

    def pending(self) -> bool:
        """Windows wait to be read (and the store is not refusing them)."""
        with self._lock:
            return bool(self._queue) and time.monotonic() >= self._paused_until

    def take(self, n: int) -> list[Taken]:
        """Up to ``n`` windows, oldest recording first, in order within a recording."""
        taken: list[Taken] = []
        with self._lock:
            for work in self._queue:
                while len(taken) < n and not work.done and not work.cancelled:
                    window = work.windows[work.next_window]
                    work.next_window += 1
                    a, b = round(window.start * SAMPLE_RATE), round(window.end * SAMPLE_RATE)
                    language = work.language or work.detected
                    taken.append((work, window, Job(work.audio[a:b], window.start, (), language, work.task)))
                if len(taken) >= n:
                    break
        return taken

    def complete(self, taken: list[Taken], readings: list[Reading]) -> None:
        """Commit each window's segments in order; finish recordings whose last window is in.
        A store that cannot take a window pauses recordings: that window is read again later."""
        refused: set[int] = set()  # works whose window the store refused in this batch
        for (work, window, _), reading in zip(taken, readings, strict=True):
            if work.cancelled or id(work) in refused:
                continue
            work.detected = work.detected or reading.language
            finals = []
            segments = work.segments
            words = work.speakers.label(reading.words) if work.speakers else reading.words
            for segment in split_segments(words):
                text = join_words(segment)
                if text:
                    start, end = segment[0].start, segment[-1].end
                    speaker = dominant(segment)
                    finals.append(
                        Final(segments, text, start, end, segment, work.detected, "recording", speaker)
                    )
                    segments += 1
            try:
                self.sink.commit_window(work.id, finals, window.end, self.model)
                work.segments = segments
            except StoreUnavailableError as e:
                refused.add(id(work))
                work.next_window = work.windows.index(window)
                if time.monotonic() >= self._paused_until:
                    log.warning("recordings paused for %.0f s: %s", STORE_RETRY_S, e.message)
                self._paused_until = time.monotonic() + STORE_RETRY_S
            except Exception as e:  # e.g. the recording was deleted meanwhile: drop it, keep going
                log.warning("recording %s: window not stored (%s); dropping it", work.id, e)
                work.cancelled = True
                self._tell(self.sink.fail_recording, work.id, f"could not store its transcript: {e}")
        with self._lock:
            for work in [w for w in self._queue if w.cancelled or w.done]:
                self._queue.remove(work)
                if not work.cancelled:
                    self._tell(self.sink.finish_recording, work.id, work.language or work.detected)

    def fail(self, taken: list[Taken], reason: str) -> None:
        with self._lock:
            for work in {id(w): w for w, _, _ in taken}.values():
                work.cancelled = True
                if work in self._queue:
                    self._queue.remove(work)
                self._tell(self.sink.fail_recording, work.id, reason)

    @staticmethod
    def _tell(update: Callable[[str, Any], None], recording_id: str, value: Any) -> None:
        """A status update the store may refuse: logged; the recording resumes from its last
        committed window at the next start."""
        try:
            update(recording_id, value)
        except Exception as e:
            log.warning("recording %s: status not stored (%s)", recording_id, e)

    def finish_empty(self) -> None:
        """Recordings that had no speech at all are done as soon as the engine sees them."""
        with self._lock:
            for work in [w for w in self._queue if not w.windows]:
                self._queue.remove(work)
                self._tell(self.sink.finish_recording, work.id, work.language)


class RecordingBatch:
    """The recording windows in decode slots. One batch at a time, so a recording's windows
    complete in order; its readings are kept until the last one finishes."""

    def __init__(self, taken: list[Taken], keys: list[int]) -> None:
        self.taken = taken
        self._index = {key: i for i, key in enumerate(keys)}
        self._readings: dict[int, Reading] = {}

    def owns(self, key: int) -> bool:
        return key in self._index

    def finished(self, key: int, reading: Reading) -> None:
        self._readings[self._index.pop(key)] = reading

    @property
    def complete(self) -> bool:
        return not self._index

    @property
    def readings(self) -> list[Reading]:
        return [self._readings[i] for i in range(len(self.taken))]

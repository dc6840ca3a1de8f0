"""One live stream: its input (the inbox its handler fills), its output (the events its handler
sends), its status, and its utterance (``utterance.Utterance``, the scheduler thread's).

Handlers (asyncio) only call ``push_audio``, ``request_flush``, ``set_keyterms``,
``add_context``, ``request_close``, ``abort`` and read ``events``; the scheduler takes the inbox,
posts events and moves the status on through the methods here: every field is written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.events import Event, Interim
from voxindex.engine.prompting import Prompting
from voxindex.engine.speakers.history import SpeakerHistory
from voxindex.engine.types import StreamOptions, TurnOptions
from voxindex.engine.utterance import Utterance

MAX_PENDING_EVENTS = 500  # past this a stalled client loses superseded interims, never finals


class StreamStatus(enum.IntEnum):
    """Ordered: ``is_finished`` is a comparison."""

    OPEN = 0
    CLOSING = 1  # client sent close: finalize what is left, send `closed`, finish
    ABORTING = 2  # the client vanished: finalize and store what was heard, send nothing
    FINISHED = 3


@dataclass
class Stream:
    options: StreamOptions
    loop: asyncio.AbstractEventLoop
    utterance: Utterance = field(repr=False)  # the scheduler thread's: what is being said
    max_inbox_s: float = 30.0
    opened_at: float = field(default_factory=time.monotonic)
    tenant: str = "default"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: StreamStatus = StreamStatus.OPEN
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    # -- input side, shared with the handler under the lock --
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _inbox: deque[Float32Array] = field(default_factory=deque, repr=False)
    _inbox_samples: int = 0
    _pushed: int = 0  # samples ever queued
    flush_at: int | None = None  # a flush applies once the engine has ingested this many samples
    _turn_options: TurnOptions | None = None  # new turn thresholds, not yet taken by the engine
    _arrivals: deque[tuple[int, float]] = field(default_factory=deque, repr=False)  # (samples, monotonic)
    room: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _full: bool = False  # ``room`` was cleared: the engine must set it again (on the handler's loop)

    # -- scheduler side --
    speakers: SpeakerHistory | None = None  # diarized streams: voice windows, clusters, labels
    # key terms and context (set by the handler, read by the scheduler: replaced whole)
    prompting: Prompting = field(default_factory=Prompting)

    def __post_init__(self) -> None:
        self.prompting = Prompting(self.options.keyterms)
        if self.options.context:
            self.prompting = self.prompting.with_context(self.options.context)
        if self.options.diarize:
            self.speakers = SpeakerHistory()
        self.room.set()

    # ---------------- handler side ----------------
    def push_audio(self, samples: Float32Array) -> None:
        """Queue 16 kHz audio. Callers await ``room`` first; the inbox is bounded by ``max_inbox_s``.
        No samples (an empty frame, a codec packet that decodes to nothing) is nothing to queue:
        an empty chunk would sit in the inbox, never taken, and keep the stream from closing."""
        if not samples.size:
            return
        with self._lock:
            self._inbox.append(samples)
            self._inbox_samples += samples.size
            self._pushed += samples.size
            self._arrivals.append((self._pushed, time.monotonic()))
            if self._inbox_samples >= self.max_inbox_s * SAMPLE_RATE:
                self.room.clear()
                self._full = True

    def request_flush(self) -> None:
        with self._lock:
            self.flush_at = self._pushed  # everything sent before the flush, not what the engine has

    def set_keyterms(self, terms: tuple[str, ...]) -> None:
        """New key terms, for the readings from now on (validated: prompting.keyterms)."""
        with self._lock:
            self.prompting = self.prompting.with_keyterms(terms)

    def add_context(self, text: str) -> None:
        """A new conversation item (an agent's reply, a user's turn) primes the next utterances."""
        if text:
            with self._lock:
                self.prompting = self.prompting.with_context(text)

    def configure_turns(self, options: TurnOptions) -> None:
        """New turn thresholds (a turn-taking stream), for the judgements from now on."""
        with self._lock:
            self._turn_options = options

    def request_close(self) -> None:
        with self._lock:
            if self.status == StreamStatus.OPEN:
                self.status = StreamStatus.CLOSING

    def abort(self) -> None:
        """The client is gone: finish quietly (what was heard is still finalized and stored)."""
        with self._lock:
            if not self.is_finished:
                self.status = StreamStatus.ABORTING

    # ---------------- scheduler side ----------------
    @property
    def is_finished(self) -> bool:
        return self.status >= StreamStatus.FINISHED

    @property
    def closing(self) -> bool:
        return self.status in (StreamStatus.CLOSING, StreamStatus.ABORTING)

    @property
    def now(self) -> float:
        """Stream time of the newest sample the engine took."""
        return self.utterance.audio.now

    @property
    def finals(self) -> int:
        return self.utterance.finals

    @property
    def has_inbox(self) -> bool:
        """Whether audio waits in the inbox (read without the lock: audio queued just after is
        seen at the next engine turn)."""
        return self._inbox_samples > 0

    @property
    def inbox_seconds(self) -> float:
        return self._inbox_samples / SAMPLE_RATE

    @property
    def lag(self) -> float:
        """Audio heard but not yet read by the model (what admission control watches)."""
        return self.inbox_seconds + self.utterance.unread_s

    @property
    def behind(self) -> float:
        """How far this stream's reading trails the wall clock since it opened: its ``lag``, but
        never more than the audio a real-time client could have sent by now."""
        read_until = self.now + self.inbox_seconds - self.lag
        return max(0.0, min(self.lag, (time.monotonic() - self.opened_at) - read_until))

    def take_inbox(self, max_samples: int) -> Float32Array:
        """Move up to ``max_samples`` from the inbox to the engine. Arrival times are kept only
        for audio the utterance still holds (bounded memory)."""
        start = round(self.utterance.audio.start * SAMPLE_RATE)
        with self._lock:
            while len(self._arrivals) > 1 and self._arrivals[0][0] < start:
                self._arrivals.popleft()
            taken: list[Float32Array] = []
            n = 0
            while self._inbox and n < max_samples:
                chunk = self._inbox.popleft()
                if n + chunk.size > max_samples:
                    self._inbox.appendleft(chunk[max_samples - n :])
                    chunk = chunk[: max_samples - n]
                taken.append(chunk)
                n += chunk.size
            self._inbox_samples -= n
            # wake the handler's loop only when it waits for room: a thousand streams' loop
            # wake-ups every engine turn cost more than their audio
            if self._full and self._inbox_samples < self.max_inbox_s * SAMPLE_RATE:
                self._full = False
                self.loop.call_soon_threadsafe(self.room.set)
        return np.concatenate(taken) if taken else np.zeros(0, np.float32)

    def arrived_at(self, t: float) -> float:
        """When (``time.monotonic()``) the audio at stream time ``t`` reached the server: latency
        is measured from there, so it includes any wait in the inbox."""
        sample = round(t * SAMPLE_RATE)
        with self._lock:
            return next((when for end, when in self._arrivals if end >= sample), time.monotonic())

    @property
    def flush_requested(self) -> bool:
        return self.flush_at is not None

    def take_flush(self) -> bool:
        """Whether a flush is due: requested, and the audio sent before it is ingested."""
        with self._lock:
            if self.flush_at is None or self.utterance.received < self.flush_at:
                return False
            self.flush_at = None
            return True

    def take_turn_options(self) -> TurnOptions | None:
        if self._turn_options is None:  # read without the lock: set at most once per message
            return None
        with self._lock:
            options, self._turn_options = self._turn_options, None
        return options

    def inbox_empty(self) -> bool:
        with self._lock:
            return not self._inbox

    def emit(self, event: Event) -> None:
        """Hand an event to the handler's loop (thread-safe). A client that stops reading loses
        interims once its queue is long, never finals."""
        if self.status >= StreamStatus.ABORTING:
            return
        self.post(event)

    def post(self, event: Event) -> None:
        """``emit`` without the status check: for an event decided while the stream was live and
        handed over later (after the store acknowledged the finals before it)."""
        if isinstance(event, Interim) and self.events.qsize() > MAX_PENDING_EVENTS:
            return
        with contextlib.suppress(RuntimeError):  # the handler's loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def finish(self) -> None:
        with self._lock:
            self.status = StreamStatus.FINISHED

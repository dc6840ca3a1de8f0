"""The acoustic end-of-turn model off the engine's thread.

The engine hands over each pausing turn's audio (``submit``) and takes the probabilities back at
its next turn (``take``); the worker runs every clip waiting in one batched call. ONNX Runtime
releases the GIL, so on a CPU the model runs beside the decode steps instead of stalling them
for every stream, and on a GPU it is one call for every waiting stream. A failure costs the
acoustic evidence (None: the words and the silence decide), never the turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from voxindex.audio import Float32Array
from voxindex.engine.turns.acoustic import SmartTurn
from voxindex.engine.turns.turn import ACOUSTIC_WINDOW_S

if TYPE_CHECKING:
    from voxindex.engine.stream import Stream
    from voxindex.engine.utterance import Utterance

log = logging.getLogger("voxindex.engine")

K = TypeVar("K")


class AcousticWorker(Generic[K]):
    def __init__(self, model: SmartTurn | None, wake: Callable[[], None]) -> None:
        self.model = model
        self._wake = wake
        self._inbox: list[tuple[K, Float32Array]] = []
        self._done: list[tuple[K, float | None]] = []
        self._cv = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.model is None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="voxindex-turns", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def warm_up(self, clip: Float32Array) -> None:
        """Run the model once before the loop starts: ONNX Runtime's first call allocates."""
        if self.model is not None:
            self.model([clip])

    def submit(self, key: K, clip: Float32Array) -> None:
        with self._cv:
            if self._thread is None:  # no model (or not started): no acoustic evidence
                self._done.append((key, None))
            else:
                self._inbox.append((key, clip))
                self._cv.notify()

    def take(self) -> list[tuple[K, float | None]]:
        with self._cv:
            done, self._done = self._done, []
        return done

    def _loop(self) -> None:
        assert self.model is not None
        while True:
            with self._cv:
                while self._running and not self._inbox:
                    self._cv.wait()
                if not self._running:
                    return
                batch, self._inbox = self._inbox, []
            try:
                probs: list[float | None] = list(self.model([clip for _, clip in batch]))
            except Exception:  # the words and the silence still decide
                log.exception("the acoustic end-of-turn model failed")
                probs = [None] * len(batch)
            with self._cv:
                self._done += [(key, p) for (key, _), p in zip(batch, probs, strict=True)]
            self._wake()


PauseWorker = AcousticWorker[tuple["Stream", float]]  # a result is for a stream's pause, by its start


def hear_pauses(worker: PauseWorker, streams: list[Stream]) -> list[Stream]:
    """Hand the turns that just paused to the acoustic model (one call for all, off the engine's
    thread); give the utterances what it judged since. Returns the streams that heard back."""
    for s in streams:
        if s.utterance.needs_acoustic:
            speech_end, clip = acoustic_clip(s.utterance)
            worker.submit((s, speech_end), clip)
    heard = []
    for (s, speech_end), p in worker.take():
        if not s.is_finished:
            s.utterance.hear_acoustic(p, speech_end)
            heard.append(s)
    return heard


def acoustic_clip(u: Utterance) -> tuple[float, Float32Array]:
    """The audio the acoustic model reads for a turn's pause (the turn's last 8 s up to now), and
    where that pause's speech ended: its result is for that pause only. The pause is asked."""
    assert u.turn is not None and u.turn.pause is not None
    u.turn.pause.asked = True
    clip = u.audio.between(max(u.audio.start, u.heard - ACOUSTIC_WINDOW_S), u.heard)
    return u.turn.pause.speech_end, clip

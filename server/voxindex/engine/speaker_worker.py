"""Speaker labels off the engine's thread: one worker owns every live stream's speaker track.

The scheduler hands it each diarized stream's new VAD chunks (``hear``) and, when a final is
made, its words (``label``); the worker batches the windows of every stream into one encoder
call, waits up to ``BATCH_S`` to gather more while no final asks, and labels finals at once,
in order. The scheduler collects labelled finals (``labelled``) at its next step and only then
stores and sends them; meanwhile it decodes on. A failure in the worker costs labels, never a
final: the words come back unlabelled.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voxindex.audio import Float32Array
from voxindex.engine.align import Word
from voxindex.engine.speakers import Speakers, SpeakerTrack

log = logging.getLogger("voxindex.engine")

BATCH_S = 0.25  # while no final waits, windows gather this long into one encoder call


@dataclass
class _Hear:
    track: SpeakerTrack
    chunks: Float32Array
    probs: Float32Array
    ends: npt.NDArray[np.float64]


@dataclass
class _Label:
    track: SpeakerTrack
    words: list[Word]
    key: Any


class SpeakerWorker:
    def __init__(self, speakers: Speakers) -> None:
        self.speakers = speakers
        self._inbox: deque[_Hear | _Label] = deque()
        self._done: deque[tuple[Any, list[Word]]] = deque()
        self._asked = 0  # label requests in the inbox
        self._cv = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._on_done: Callable[[], None] = lambda: None

    def start(self, on_done: Callable[[], None]) -> None:
        self._on_done = on_done
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="voxindex-speakers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---------------- engine thread ----------------
    def hear(
        self, track: SpeakerTrack, chunks: Float32Array, probs: Float32Array, ends: npt.NDArray[np.float64]
    ) -> None:
        with self._cv:
            self._inbox.append(_Hear(track, chunks, probs, ends))

    def label(self, track: SpeakerTrack, words: list[Word], key: Any) -> None:
        """Ask for ``words`` labelled; they come back from ``labelled`` with ``key``."""
        with self._cv:
            self._inbox.append(_Label(track, words, key))
            self._asked += 1
            self._cv.notify()

    def labelled(self) -> list[tuple[Any, list[Word]]]:
        if not self._done:
            return []
        with self._cv:
            out = list(self._done)
            self._done.clear()
        return out

    # ---------------- the worker ----------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._inbox) or not self._running, timeout=1.0)
                if not self._running and not self._asked:
                    return
                if not self._asked:  # nothing urgent: let more windows gather into one batch
                    self._cv.wait_for(lambda: self._asked > 0 or not self._running, timeout=BATCH_S)
                items = list(self._inbox)
                self._inbox.clear()
                self._asked = 0
            done = self._work(items)
            if done:
                with self._cv:
                    self._done.extend(done)
                self._on_done()

    def _work(self, items: list[_Hear | _Label]) -> list[tuple[Any, list[Word]]]:
        done: list[tuple[Any, list[Word]]] = []
        for item in items:
            try:
                if isinstance(item, _Hear):
                    self.speakers.hear(item.track, item.chunks, item.probs, item.ends)
                else:
                    done.append((item.key, self.speakers.label(item.track, item.words)))
            except Exception:  # labels are lost, never the final
                log.exception("speaker labels failed")
                if isinstance(item, _Label):
                    done.append((item.key, item.words))
        try:
            self.speakers.embed()
        except Exception:
            log.exception("speaker embeddings failed")
        return done

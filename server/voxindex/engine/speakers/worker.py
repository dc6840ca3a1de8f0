"""Speaker labels with the encoder off the engine's thread: one worker reads every live
stream's voice windows.

The scheduler hands it each diarized stream's new VAD chunks (``hear``, a queue append); the
worker gathers windows for up to ``BATCH_S`` and embeds every stream's in one encoder call. When
a final is made, ``label_now`` (on the engine thread) takes that stream's queued chunks, reads
what the worker has not (at most the last ``BATCH_S`` of voice, and the final's last piece)
and labels the words: the bulk of the encoder's work never delays a final or a decode step.
A failure costs labels, never a final: the words come back unlabelled.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voxindex.audio import Float32Array
from voxindex.engine.speakers.history import SpeakerHistory
from voxindex.engine.speakers.labeller import Speakers
from voxindex.engine.types import Word

log = logging.getLogger("voxindex.engine")

BATCH_S = 0.25  # windows gather this long into one encoder call


@dataclass
class _Hear:
    track: SpeakerHistory
    chunks: Float32Array
    probs: Float32Array
    ends: npt.NDArray[np.float64]


class SpeakerWorker:
    def __init__(self, speakers: Speakers) -> None:
        self.speakers = speakers
        self._inbox: deque[_Hear] = deque()
        self._cv = threading.Condition()  # guards the inbox
        self._working = threading.Lock()  # guards the tracks and the encoder's batch
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="voxindex-speakers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def hear(
        self, track: SpeakerHistory, chunks: Float32Array, probs: Float32Array, ends: npt.NDArray[np.float64]
    ) -> None:
        with self._cv:
            self._inbox.append(_Hear(track, chunks, probs, ends))
            self._cv.notify()

    def hear_chunks(
        self,
        track: SpeakerHistory,
        chunks: tuple[Float32Array, Float32Array, npt.NDArray[np.float64]] | None,
    ) -> None:
        """A diarized stream's new VAD chunks with their audio (``utterance.chunks_of``), if held
        (always, while ingesting)."""
        if chunks is not None:
            self.hear(track, *chunks)

    def label_now(self, track: SpeakerHistory, words: list[Word]) -> list[Word]:
        """A final's words with their speakers, now (engine thread)."""
        with self._cv:
            mine = [item for item in self._inbox if item.track is track]
            if mine:
                self._inbox = deque(item for item in self._inbox if item.track is not track)
        with self._working:
            try:
                for item in mine:
                    self.speakers.hear(track, item.chunks, item.probs, item.ends)
                return self.speakers.label(track, words)
            except Exception:  # labels are lost, never the final
                log.exception("speaker labels failed")
                return words

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._inbox) or not self._running, timeout=1.0)
                if not self._running:
                    return
                self._cv.wait_for(lambda: not self._running, timeout=BATCH_S)  # gather a batch
            # the items are taken with the tracks held: a final's label_now either finds its
            # chunks still in the inbox or waits until they are heard, never labels without them
            with self._working:
                with self._cv:
                    items = list(self._inbox)
                    self._inbox.clear()
                try:
                    for item in items:
                        self.speakers.hear(item.track, item.chunks, item.probs, item.ends)
                    self.speakers.embed()
                except Exception:
                    log.exception("speaker embeddings failed")

"""Recordings in the room live streams leave: their windows fill free decode slots no live
reading is waiting for, only while no final is pending, one batch at a time so a recording's
windows complete in order. Finals always first."""

from __future__ import annotations

import logging
from collections.abc import Callable

from voxindex.engine.executor import Executor
from voxindex.engine.reading import Reading
from voxindex.engine.recordings import RecordingBatch, Recordings
from voxindex.engine.stats import StepStats, moving_average

log = logging.getLogger("voxindex.engine")


class Background:
    def __init__(
        self,
        recordings: Recordings | None,
        executor: Executor,
        step_budget_s: float,
        stats: StepStats,
        observe: Callable[[str, str, int, int], None],
    ) -> None:
        self.recordings, self.executor, self.step_budget_s = recordings, executor, step_budget_s
        self.stats, self._observe = stats, observe
        self._batch: RecordingBatch | None = None

    def admit(self, live_first: Callable[[], bool]) -> bool:
        """Admit the next batch of windows, unless one is in flight or ``live_first()`` (live
        readings wait for slots, or a final is pending: asked only when windows wait, it scans
        every stream). Returns whether it did anything."""
        if self.recordings is None or self._batch is not None:
            return False
        self.recordings.finish_empty()
        if not self.recordings.pending() or live_first():
            return False
        cost = self.stats.recording_cost
        n = 1 if cost <= 0 else max(1, int(self.step_budget_s / cost))  # measure one first
        taken = self.recordings.take(min(n, self.executor.free))
        if not taken:
            return False
        try:
            keys = self.executor.admit([job for _, _, job in taken])
        except Exception as e:  # fail these recordings, never the loop or the live streams
            log.exception("recording admission failed")
            self.recordings.fail(taken, f"transcription failed: {e.__class__.__name__}")
            return True
        self.stats.recording_cost = moving_average(cost, self.executor.timing.encode_s / len(taken))
        self._batch = RecordingBatch(taken, keys)
        self._observe("recording", "encode", len(taken), sum(job.audio.size for _, _, job in taken))
        return True

    def finished(self, key: int, reading: Reading) -> None:
        if self._batch is not None and self._batch.owns(key):
            self._batch.finished(key, reading)

    def complete(self) -> None:
        """Commit the batch once its last window is read."""
        batch = self._batch
        if self.recordings is None or batch is None or not batch.complete:
            return
        self.recordings.complete(batch.taken, batch.readings)
        self._batch = None

    def fail(self, e: Exception) -> None:
        if self.recordings is not None and self._batch is not None:
            self.recordings.fail(self._batch.taken, f"transcription failed: {e.__class__.__name__}")
        self._batch = None

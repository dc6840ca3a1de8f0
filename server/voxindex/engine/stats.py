"""What the engine's steps cost, as moving averages the scheduler plans the next steps by."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from voxindex.audio import SAMPLE_RATE
from voxindex.engine.executor import Executor
from voxindex.metrics import Metrics


def moving_average(old: float, new: float) -> float:
    return new if old <= 0 else 0.8 * old + 0.2 * new


@dataclass
class StepStats:
    steps: int = 0
    batches: int = 0  # decode steps
    decode_rows: int = 0  # rows over all decode steps: tokens decoded
    batch_items: int = 0  # readings admitted
    last_step_s: float = 0.0
    encode_cost: float = 0.0  # moving average: encoder seconds per admitted live reading
    recording_cost: float = 0.0  # the same, for a recording window (30 s windows cost more)
    reading_cost: float = 0.0  # moving average: engine seconds per finished reading, all included
    recent_batches: deque[int] = field(default_factory=lambda: deque(maxlen=100))  # rows per decode step
    _busy_s: float = 0.0
    _readings: int = 0

    def admissions_in_budget(self, budget_s: float, most: int) -> int:
        """How many readings one encoder pass may take so a step stays within ``budget_s``:
        every reading in flight waits for it. On a GPU an encoder pass costs little and the
        batch fills to ``most``."""
        if self.encode_cost <= 0:
            return most
        return max(1, int(budget_s / self.encode_cost))

    def stall_allowance(self, stall_s: float) -> int:
        """Readings whose encoder pass stalls a final in flight by under ``stall_s``."""
        return 0 if self.encode_cost <= 0 else int(stall_s / self.encode_cost)

    def observe_readings(self, busy_s: float, finished: int) -> None:
        """Engine time spent and readings finished in one step; averaged over ≥ 4 readings."""
        self._busy_s += busy_s
        self._readings += finished
        if self._readings >= 4:
            self.reading_cost = moving_average(self.reading_cost, self._busy_s / self._readings)
            self._busy_s, self._readings = 0.0, 0


class StepMeter:
    """One step's work into the metrics: model time and audio (the real-time factor), step and
    batch sizes, and the readings' cost the scheduler plans by."""

    def __init__(self, metrics: Metrics, stats: StepStats, executor: Executor) -> None:
        self.metrics, self.stats, self.executor = metrics, stats, executor
        self._ingested_s = self._model_s = self._recording_audio_s = 0.0  # this step's work
        self._admitted_s = 0.0  # encoder time since the last decode step

    def ingested(self, seconds: float) -> None:
        self._ingested_s = seconds
        if seconds:
            self.metrics.audio_seconds.labels("live").inc(seconds)

    def observe(self, kind: str, phase: str, size: int, samples: int) -> None:
        """Metrics of one admission (``encode``) or decode step (``decode``)."""
        timing, m = self.executor.timing, self.metrics
        seconds = timing.encode_s if phase == "encode" else timing.decode_s
        if phase == "encode":
            m.batch_size.labels(kind).observe(size)
            self._admitted_s += seconds
        m.step_seconds.labels(phase).observe(seconds)
        m.model_seconds.labels(kind).inc(seconds)
        self._model_s += seconds
        if kind == "recording":
            self._recording_audio_s += samples / SAMPLE_RATE
            if samples:
                m.audio_seconds.labels("recording").inc(samples / SAMPLE_RATE)

    def readings_finished(self, n: int) -> None:
        """The engine time of the last decode step and the admissions before it, per reading."""
        self.stats.observe_readings(self.executor.timing.decode_s + self._admitted_s, n)
        self._admitted_s = 0.0

    def record(self, started: float, finished: int, lags: Callable[[], list[float]]) -> None:
        self.stats.steps += 1
        m = self.metrics
        if self._model_s:
            m.step_seconds.labels("total").observe(time.perf_counter() - started)
            m.observe_work(self._model_s, self._ingested_s + self._recording_audio_s)
        elif self._ingested_s:
            m.observe_work(0.0, self._ingested_s)
        self._model_s = self._recording_audio_s = 0.0
        if finished:
            for lag in lags():
                m.stream_lag.observe(lag)
            self.stats.last_step_s = time.perf_counter() - started

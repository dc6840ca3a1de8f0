"""The Prometheus series one server exposes at ``/metrics`` (docs/operations.md lists them).

One ``Metrics`` object per server, with its own registry, so servers started side by side
(tests, benchmarks) never share counters. The engine, the index and the API record into it;
gauges that describe current state (streams, index size, GPU memory) are read when scraped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RTF_WINDOW_S = 60.0


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build = Info("voxindex_build", "Version, model and device this server runs", registry=r)

        # streams and admission
        self.active_streams = Gauge("voxindex_active_streams", "Live streams open now", registry=r)
        self.streams_opened = Counter(
            "voxindex_streams_opened", "Live streams admitted", ["protocol"], registry=r
        )
        self.streams_refused = Counter(
            "voxindex_streams_refused",
            "Stream handshakes refused, by error code (over_capacity, rate_limited, unauthorized...)",
            ["code"],
            registry=r,
        )
        self.ready = Gauge("voxindex_ready", "1 when /readyz answers 200", registry=r)
        self.draining = Gauge("voxindex_draining", "1 while shutting down gracefully", registry=r)

        # the engine loop
        self.batch_size = Histogram(
            "voxindex_batch_size", "Readings per model batch", ["kind"], buckets=BATCH_BUCKETS, registry=r
        )
        self.step_seconds = Histogram(
            "voxindex_step_seconds",
            "Engine time per step with work: encode (log-mel + encoder), decode (greedy + alignment), total",
            ["phase"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.engine_lag = Gauge(
            "voxindex_engine_lag_seconds", "The most-behind live stream's lag behind real time", registry=r
        )
        self.stream_lag = Histogram(
            "voxindex_stream_lag_seconds",
            "Per-stream audio heard but not yet read by the model, sampled each model step",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.onset_to_interim = Histogram(
            "voxindex_onset_to_interim_seconds",
            "Wall time from the arrival of an utterance's first audio to its first interim",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_final = Histogram(
            "voxindex_end_to_final_seconds",
            "Wall time from the arrival of an utterance's last audio to its final, by finalize reason",
            ["reason"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.finals = Counter("voxindex_finals", "Final segments sent (stored first)", ["reason"], registry=r)
        self.audio_seconds = Counter(
            "voxindex_audio_seconds",
            "Audio the engine took in, by kind (live, recording)",
            ["kind"],
            registry=r,
        )
        self.model_seconds = Counter(
            "voxindex_model_seconds", "Wall time spent in model batches, by kind", ["kind"], registry=r
        )
        self.realtime_factor = Gauge(
            "voxindex_realtime_factor",
            f"Model seconds per audio second over the last {RTF_WINDOW_S:.0f} s (below 1 keeps up; 0 idle)",
            registry=r,
        )
        self.realtime_factor.set_function(self._rtf)
        self.recordings_pending = Gauge(
            "voxindex_recordings_pending", "Recordings waiting for or in transcription", registry=r
        )
        self.store_free_bytes = Gauge(
            "voxindex_store_free_bytes", "Free space on the data directory's filesystem", registry=r
        )
        self.store_reserve_bytes = Gauge(
            "voxindex_store_reserve_bytes",
            "Free space below which /readyz reports the store full (--store-min-free)",
            registry=r,
        )
        self.warmup_seconds = Gauge("voxindex_warmup_seconds", "How long start-up warm-up took", registry=r)

        # the index (its sizes: watch_index)
        self.search_seconds = Histogram(
            "voxindex_search_seconds",
            "Search latency by mode",
            ["mode"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.gpu_memory: Gauge | None = None
        self.device_info = Gauge(
            "voxindex_device_info", "The device the engine runs on (1)", ["type", "name"], registry=r
        )

        self._watched: list[Gauge] = []  # gauges read from live state (unwatch forgets them)
        self._collectors: list[Collector] = []
        self._rtf_lock = threading.Lock()
        self._rtf_window: deque[tuple[float, float, float]] = deque()  # (time, model s, audio s)

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Read ``gauge`` from ``read`` at each scrape; a failing read shows NaN, never a 500."""

        def safe() -> float:
            try:
                return float(read())
            except Exception:
                return float("nan")

        gauge.set_function(safe)
        self._watched.append(gauge)

    def watch_index(self, read: Callable[[], object]) -> None:
        """The index's sizes and availability, from one ``read`` per scrape (an
        ``index.base.IndexStats``: its fields are read by the names in ``_IndexCollector.SERIES``)."""
        collector = _IndexCollector(read)
        self.registry.register(collector)
        self._collectors.append(collector)

    def unwatch(self) -> None:
        """Forget every live-state reader (at shutdown): a stopped app then holds none of its
        engine, index or model, which the readers' closures would otherwise keep alive."""
        for gauge in self._watched:
            gauge.set_function(lambda: float("nan"))
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._watched.clear()
        self._collectors.clear()

    def watch_gpu(self, allocated: Callable[[], float], reserved: Callable[[], float]) -> None:
        self.gpu_memory = Gauge(
            "voxindex_gpu_memory_bytes", "CUDA memory held by PyTorch", ["kind"], registry=self.registry
        )
        self.watch(self.gpu_memory.labels("allocated"), allocated)
        self.watch(self.gpu_memory.labels("reserved"), reserved)

    def watch_gpu_card(
        self, memory: Callable[[], tuple[int, int]], utilization: Callable[[], float | None]
    ) -> None:
        """The whole GPU, every process counted (NVML): memory used and total, utilisation."""
        r = self.registry
        used = Gauge("voxindex_gpu_memory_used_bytes", "GPU memory in use, all processes", registry=r)
        total = Gauge("voxindex_gpu_memory_total_bytes", "GPU memory in all", registry=r)
        busy = Gauge(
            "voxindex_gpu_utilization_ratio",
            "Share of time the GPU ran kernels (NVML; NaN without)",
            registry=r,
        )
        self.watch(used, lambda: memory()[0])
        self.watch(total, lambda: memory()[1])
        self.watch(busy, lambda: float("nan") if (u := utilization()) is None else u)

    def observe_work(self, model_s: float, audio_s: float) -> None:
        """Feed the real-time factor: model time spent and audio taken in during one step."""
        now = time.monotonic()
        with self._rtf_lock:
            self._rtf_window.append((now, model_s, audio_s))
            while self._rtf_window and self._rtf_window[0][0] < now - RTF_WINDOW_S:
                self._rtf_window.popleft()

    def _rtf(self) -> float:
        with self._rtf_lock:
            cutoff = time.monotonic() - RTF_WINDOW_S
            recent = [(m, a) for t, m, a in self._rtf_window if t >= cutoff]
        audio = sum(a for _, a in recent)
        return sum(m for m, _ in recent) / audio if audio > 0 else 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _IndexCollector(Collector):
    SERIES = (
        ("voxindex_index_segments", "Final segments stored", "segments"),
        ("voxindex_index_vectors", "Vectors in the search index", "vectors"),
        (
            "voxindex_index_pending",
            "Segments stored but not yet searchable (embedding, or the shared store)",
            "pending",
        ),
        (
            "voxindex_store_available",
            "1 while the transcript store takes writes (a shared store can be unreachable: finals then wait)",
            "available",
        ),
    )

    def __init__(self, read: Callable[[], object]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats: object | None = self.read()
        except Exception:  # a failing read shows NaN, never a 500
            stats = None
        for name, documentation, field in self.SERIES:
            value = float(getattr(stats, field)) if stats is not None else float("nan")
            yield GaugeMetricFamily(name, documentation, value=value)

"""Live index benchmark: final → searchable latency, ingest rate, and search at scale.

    .venv/bin/python benchmarks/index_bench.py [--sizes 10000 100000 1000000] [--gpu]

1. A real LiveIndex (SQLite WAL + MiniLM + FAISS) in a temp dir: segments are committed one
   at a time, 50 ms apart, as the engine does; latency = commit returned (the moment `final`
   is sent) → the indexer has added its vector. p50/p95 over 200 segments.
2. Ingest: 2,000 segments committed back to back; rate until all are searchable.
3. Search: FAISS over synthetic clustered unit vectors (d=384) at each size, flat (exact) and
   IVF (as built past the threshold), p50/p95 over 200 queries, recall@10 of IVF vs flat.
   ``--gpu``: the same searches on the GPU copy ``VectorIndex(gpu=True)`` keeps (1 and 2,
   which measure the embedding thread and SQLite, are skipped).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from voxindex.engine.events import Final
from voxindex.index.live import LiveIndex
from voxindex.index.vectors import VectorIndex, gpu_unavailable

TOPICS = [
    "budget",
    "launch",
    "hiring",
    "travel",
    "security",
    "design",
    "sales",
    "support",
    "roadmap",
    "pricing",
]


def sentence(i: int) -> str:
    return f"Item {i}: we discussed the {TOPICS[i % 10]} plan and agreed on next steps for week {i % 52}."


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) * 1000


def live_latency() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index = LiveIndex.open(Path(tmp))
        index.store.create_stream("bench", "default", "tiny.en")
        index.commit("bench", Final(0, "warm up", 0, 1), "tiny.en")
        time.sleep(1)
        latencies = []
        for i in range(1, 201):
            committed = time.monotonic()
            sid = index.commit("bench", Final(i, sentence(i), i, i + 1), "tiny.en")
            while sid not in index.indexer.indexed:
                time.sleep(0.0005)
            latencies.append(index.indexer.indexed[sid] - committed)
            time.sleep(0.05)
        print(
            f"final → searchable (vector): p50 {pct(latencies, 50):.1f} ms  p95 {pct(latencies, 95):.1f} ms"
        )
        t = time.monotonic()
        ids = [index.commit("bench", Final(i, sentence(i), i, i + 1), "tiny.en") for i in range(2000)]
        while ids[-1] not in index.indexer.indexed or index.indexer.vectors.size < 2201:
            time.sleep(0.005)
        elapsed = time.monotonic() - t
        print(f"ingest: 2000 segments committed and searchable in {elapsed:.2f} s ({2000 / elapsed:.0f}/s)")
        index.close()


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, 384), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        x = (
            centres[rng.integers(0, 1000, b - a)]
            + 0.6 * rng.standard_normal((b - a, 384)).astype(np.float32) / 19.6
        )
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def search_at(n: int, gpu: bool = False) -> None:
    data = clustered(n, 0)
    queries = clustered(200, 1)
    ids = list(range(1, n + 1))
    flat = VectorIndex(ivf_threshold=10**12, gpu=gpu)
    flat.add(ids, data)
    t = time.monotonic()
    ivf = VectorIndex(ivf_threshold=n - 1, gpu=gpu)
    ivf.add(ids, data)
    built = time.monotonic() - t
    del data
    for name, index in (("flat", flat), ("ivf", ivf)):
        times = []
        for q in queries:
            t = time.perf_counter()
            index.search(q, 10)
            times.append(time.perf_counter() - t)
        print(f"n={n:>9,}  {name:4s}  p50 {pct(times, 50):7.2f} ms  p95 {pct(times, 95):7.2f} ms")
    recall = np.mean(
        [len({i for i, _ in flat.search(q, 10)} & {i for i, _ in ivf.search(q, 10)}) / 10 for q in queries]
    )
    print(f"n={n:>9,}  ivf recall@10 vs flat = {recall:.3f}  (built in {built:.1f} s)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--gpu", action="store_true", help="search on a GPU copy (needs faiss with GPU support)")
    args = p.parse_args()
    if args.gpu and (why := gpu_unavailable()) is not None:
        raise SystemExit(f"--gpu: {why}")
    if not args.gpu:
        live_latency()
    for n in args.sizes:
        search_at(n, args.gpu)


if __name__ == "__main__":
    main()

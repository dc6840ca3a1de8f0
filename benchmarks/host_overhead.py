"""The engine's host (Python) work that does not shrink on a GPU, measured on the CPU, old way
against new side by side.

    .venv/bin/python benchmarks/host_overhead.py [--streams 256,1024,2048] [--threads 1]

On a GPU a decode step of a thousand rows takes a few milliseconds, so host work per step,
per reading or per stream decides capacity as much as the kernels do:

1. VAD for N streams' 100 ms of new audio: Silero's TorchScript network alone (the engine's
   before, and on the engine's device on a GPU) against the CPU engine's ``Vad`` (calls of up
   to ``ONNX_MAX_ROWS`` streams in ONNX Runtime, Silero's control-flow-free export; the rest
   TorchScript). (Before that, the engine ran Silero's first ONNX export for every call: 2.1×
   slower than TorchScript at 1024 streams, BENCHMARKS.md.)
2. DTW for one reading's word timings (30 tokens × 500 frames, 60 × 750): the cell loop it
   replaced against the vectorised rows.
3. A decode step's host work for N rows: the per-row bookkeeping it replaced (append the
   token, check the budget, look for a loop) against reading the status words the device
   wrote.
4. One host turn of the scheduler (ingest, VAD, schedule, close) for N streams whose clients
   send 100 ms frames (a fifth of them arrive in each 20 ms turn), no speech in flight: its
   fixed cost, VAD's model call included (on a GPU that call is one small batched kernel set).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine.reference_decoder import is_looping

from voxindex.audio import decode_file
from voxindex.config import Settings
from voxindex.engine.align import dtw
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.types import StreamOptions
from voxindex.engine.vad import Vad, VadState
from voxindex.loading import load_model
from voxindex.samples import samples


def best_of(fn: Any, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def vad_call(n: int, audio: np.ndarray, onnx: bool) -> float:
    """One ingest's VAD for ``n`` streams' 100 ms, with or without the ONNX Runtime path."""
    vad = Vad()
    if not onnx:
        vad._onnx = None
    frames = [audio[i * 97 % (audio.size - 1600) :][:1600] for i in range(n)]
    return best_of(lambda: vad([VadState() for _ in range(n)], frames))


def dtw_cells(cost: np.ndarray) -> None:
    """The row scan this project used before: one Python step per frame."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        best_prev = np.minimum(acc[i - 1, :-1], acc[i - 1, 1:])
        row, c = acc[i], cost[i - 1]
        for j in range(1, m + 1):
            left = row[j - 1]
            row[j] = c[j - 1] + (best_prev[j - 1] if best_prev[j - 1] <= left else left)


def step_rows_old(histories: list[list[int]]) -> None:
    for tokens in histories:
        tokens.append(7)
        if len(tokens) >= 224:
            continue
        is_looping(tokens)
        tokens.pop()


def step_rows_new(status: torch.Tensor) -> None:
    flags = status.cpu().numpy()
    (flags & 1).nonzero()


def host_turn(scheduler: Scheduler, n: int, audio: np.ndarray) -> float:
    loop = asyncio.new_event_loop()
    streams = [scheduler.open(StreamOptions(), loop) for _ in range(n)]
    frame = 1600  # 100 ms
    offsets = [i * 97 % (audio.size - 40 * frame) for i in range(n)]
    k = 0

    def turn() -> None:
        nonlocal k
        for i, (s, o) in enumerate(zip(streams, offsets, strict=True)):
            if (i + k) % 5 == 0:  # this client's frame arrives in this turn
                s.push_audio(audio[o + k // 5 * frame : o + (k // 5 + 1) * frame] * 0.01)  # quiet: no speech
        k += 1
        scheduler._host_turn = 0.0
        scheduler.step()

    seconds = min(best_of(turn, 10) for _ in range(3))
    for s in streams:
        s.abort()
    while scheduler.streams:
        scheduler._host_turn = 0.0
        scheduler.step()
    loop.close()
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="256,1024,2048")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    levels = [int(x) for x in args.streams.split(",")]
    audio = np.concatenate([decode_file(s.path) for s in samples()] * 4)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    print("\n1. VAD, 100 ms of audio for every stream (ms)")
    for n in sorted({1, 4, 16, 32, *levels}):
        old, new = vad_call(n, audio, onnx=False), vad_call(n, audio, onnx=True)
        print(f"   N={n:5d}  torchscript {old * 1000:8.2f}  engine's Vad {new * 1000:8.2f}  {old / new:.2f}x")
    print("\n2. DTW of one reading (ms)")
    rng = np.random.default_rng(0)
    for n, m in ((30, 500), (60, 750)):
        cost = rng.standard_normal((n, m)).astype(np.float32)
        old, new = best_of(lambda c=cost: dtw_cells(c)), best_of(lambda c=cost: dtw(c))
        print(f"   {n:3d} tokens × {m} frames  cell loop {old * 1000:6.2f}", end="")
        print(f"  vectorised {new * 1000:6.2f}", end="")
        print(f"  {old / new:.1f}x")
    print("\n3. A decode step's host work for N rows (ms)")
    rand = random.Random(0)
    for n in levels:
        histories = [[rand.randrange(50000) for _ in range(rand.randrange(1, 60))] for _ in range(n)]
        status = torch.zeros(n, dtype=torch.long)
        old, new = best_of(lambda h=histories: step_rows_old(h)), best_of(lambda s=status: step_rows_new(s))
        print(f"   N={n:5d}  per-row loop {old * 1000:7.3f}  status words {new * 1000:7.3f}", end="")
        print(f"  {old / new:.0f}x")
    print("\n4. One scheduler host turn, N streams sending 100 ms frames, nothing to read (ms)")
    model = load_model("tiny.en", device="cpu", compute_type="float32")
    scheduler = Scheduler(
        model, Settings(max_streams=max(levels) + 1, max_streams_per_tenant=0, index=False, warmup=False)
    )
    net = scheduler.vad._run

    def no_model(x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((x.shape[0], 1), np.float32), state  # what is left once VAD runs on a GPU

    for n in levels:
        whole = host_turn(scheduler, n, audio)
        scheduler.vad._run = no_model  # type: ignore[method-assign]
        python = host_turn(scheduler, n, audio)
        scheduler.vad._run = net  # type: ignore[method-assign]
        print(f"   N={n:5d}  with VAD on this CPU {whole * 1000:6.1f}", end="")
        print(f"  without the VAD model call {python * 1000:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

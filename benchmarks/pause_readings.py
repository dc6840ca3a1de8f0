"""A turn's pause reading, the model call an eager end of turn waits for: its cost, old path
against new, in one run.

    .venv/bin/python benchmarks/pause_readings.py                 # tiny.en int8 (auto)
    .venv/bin/python benchmarks/pause_readings.py --prompt-tokens 64 32 0 --json out.json

The turn corpus (``tests/turn_corpus.py``) is played through an in-process engine stepped by
hand (every 20 ms frame, no wall clock: an engine with room to spare), and every reading it
admits for a turn's pause is kept as it was asked for (window, prompt of the stream's own past
text, draft). Each is then read alone, best of ``--repeat``: on the engine's one torch thread
(the old path) and with its admission on ``--lone-threads`` (``VOXINDEX_LONE_THREADS``: a lone
urgent reading encodes on cores the server leaves idle); and, to see what the prompt costs, on
one thread with the prompt cut to its last ``--prompt-tokens``. Reported: the admission
(log-mel, encoder, cross K/V, prefix and draft), the whole reading, ratios to the old path, and
how many readings have the old path's tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_synth
from tests.turn_corpus import corpus, session

from voxindex.config import Settings
from voxindex.engine.reading import Job, Reading
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.types import StreamOptions, TurnOptions
from voxindex.loading import load_model

FRAME = 320  # 20 ms


def pause_jobs(scheduler: Scheduler) -> list[Job]:
    """The jobs the engine admits for turns' pauses over the whole turn corpus."""
    jobs: list[Job] = []
    make_job = scheduler._job

    def job(s: Any) -> Job:
        made = make_job(s)
        if s.utterance.needs_pause_reading():
            jobs.append(made)
        return made

    scheduler._job = job  # type: ignore[method-assign]
    audio, _ = session(corpus(make_synth()))
    loop = asyncio.new_event_loop()
    try:
        options = StreamOptions(turns=TurnOptions(eot_threshold=0.7, eager_threshold=0.4))
        stream = scheduler.open(options, loop)
        for i in range(0, audio.size, FRAME):
            stream.push_audio(audio[i : i + FRAME])
            scheduler.step()
        stream.request_close()
        while not stream.is_finished:
            scheduler.step()
    finally:
        loop.close()
    return jobs


def read(scheduler: Scheduler, job: Job, threads: int, repeat: int) -> tuple[float, float, Reading]:
    """(admission s, whole reading s, reading): best of ``repeat``."""
    ex = scheduler.executor
    best_admit = best_all = float("inf")
    reading = Reading()
    for _ in range(repeat):
        t0 = time.perf_counter()
        ex.admit([job], threads)
        t1 = time.perf_counter()
        done: list[tuple[int, Reading]] = []
        while not done:
            done = ex.step()
        t2 = time.perf_counter()
        reading = done[0][1]
        best_admit, best_all = min(best_admit, t1 - t0), min(best_all, t2 - t0)
    return best_admit, best_all, reading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--compute-type", default="auto")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lone-threads", type=int, default=2, help="the new path's threads")
    ap.add_argument("--prompt-tokens", type=int, nargs="*", default=[64, 0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    model = load_model(args.model, compute_type=args.compute_type)
    scheduler = Scheduler(model, Settings(lone_threads=args.lone_threads))  # stepped by hand
    jobs = pause_jobs(scheduler)
    engine_threads = torch.get_num_threads()
    print(f"{len(jobs)} pause readings; engine threads {engine_threads}, lone {scheduler.lone_threads}")
    paths: list[tuple[str, int, int | None]] = [
        ("old: engine threads", engine_threads, None),
        ("new: lone threads", scheduler.lone_threads, None),
    ] + [(f"prompt ≤ {n} tokens", engine_threads, n) for n in args.prompt_tokens]
    rows: list[dict[str, Any]] = []
    base: list[Reading] = []
    for name, threads, cap in paths:
        timings = []
        for job in jobs:
            asked = job if cap is None else replace(job, prompt=job.prompt[-cap:] if cap else ())
            timings.append(read(scheduler, asked, threads, args.repeat))
        readings = [r for _, _, r in timings]
        base = base or readings
        same = sum(a.tokens == b.tokens for a, b in zip(readings, base, strict=True))
        row = {
            "path": name,
            "threads": threads,
            "admission_p50_s": round(statistics.median(t[0] for t in timings), 4),
            "reading_p50_s": round(statistics.median(t[1] for t in timings), 4),
            "reading_mean_s": round(statistics.mean(t[1] for t in timings), 4),
            "same_tokens": f"{same}/{len(jobs)}",
        }
        row["reading_ratio"] = round(row["reading_mean_s"] / rows[0]["reading_mean_s"], 3) if rows else 1.0
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

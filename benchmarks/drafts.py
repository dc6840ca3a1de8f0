"""Drafts: a reading that starts from the stream's previous reading, against one that does not.

    .venv/bin/python benchmarks/drafts.py                       # tiny.en int8, 1 thread
    .venv/bin/python benchmarks/drafts.py --compute-type float32 --json out.json

Every real recording (``tests/fixtures``), read as a live stream reads it: an interim reading of
its first ``--heard`` share (0.7), then the final reading of all of it, once without a draft and
once with the interim's tokens as its draft (``Runner._take_draft``: kept as far as greedy
decoding agrees). Each final reading is timed alone (best of ``--repeat``): the admission
(log-mel, encoder, cross K/V, prefill) and the decode steps; and its tokens are compared. In one
run, old path against new, as ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import recordings

from voxindex.audio import SAMPLE_RATE, decode_file
from voxindex.engine.executor import Executor
from voxindex.engine.reading import Job, Reading
from voxindex.loading import load_model


def timed(executor: Executor, job: Job, repeat: int) -> tuple[float, float, int, Reading]:
    """(admission s, decode s, decode steps, reading): the best of ``repeat`` runs."""
    best_admit = best_decode = float("inf")
    steps = 0
    reading = Reading()
    for _ in range(repeat):
        t0 = time.perf_counter()
        executor.admit([job])
        t1 = time.perf_counter()
        steps, done = 0, []
        while not done:
            done = executor.step()
            steps += 1
        t2 = time.perf_counter()
        reading = done[0][1]
        best_admit, best_decode = min(best_admit, t1 - t0), min(best_decode, t2 - t1)
    return best_admit, best_decode, steps, reading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--compute-type", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the engine runs with 1)")
    ap.add_argument("--heard", type=float, default=0.7, help="share of the audio the interim heard")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", compute_type=args.compute_type)
    executor = Executor(model, slots=2)
    rows: list[dict[str, Any]] = []
    for rec in recordings():
        audio = decode_file(rec.path)
        interim = executor.run([Job(audio[: int(audio.size * args.heard)], 0.0)])[0]
        plain = timed(executor, Job(audio, 0.0), args.repeat)
        drafted = timed(executor, Job(audio, 0.0, draft=tuple(interim.tokens)), args.repeat)
        rows.append(
            {
                "recording": rec.path.stem,
                "seconds": round(audio.size / SAMPLE_RATE, 2),
                "draft_tokens": len(interim.tokens),
                "steps": [plain[2], drafted[2]],
                "admit_ms": [round(plain[0] * 1000, 1), round(drafted[0] * 1000, 1)],
                "decode_ms": [round(plain[1] * 1000, 1), round(drafted[1] * 1000, 1)],
                "same_text": plain[3].text == drafted[3].text,
            }
        )
        r = rows[-1]
        print(
            f"{r['recording']:12} {r['seconds']:5.1f} s  draft {r['draft_tokens']:3}  steps {plain[2]:3} → "
            f"{drafted[2]:3}  admit {r['admit_ms'][0]:6.1f} → {r['admit_ms'][1]:6.1f} ms  decode "
            f"{r['decode_ms'][0]:6.1f} → {r['decode_ms'][1]:6.1f} ms  same text: {r['same_text']}"
        )
    total = {k: [sum(r[k][i] for r in rows) for i in (0, 1)] for k in ("steps", "admit_ms", "decode_ms")}
    reading = [total["admit_ms"][i] + total["decode_ms"][i] for i in (0, 1)]
    print(
        f"all: steps ×{total['steps'][1] / total['steps'][0]:.2f}, decode ×"
        f"{total['decode_ms'][1] / total['decode_ms'][0]:.2f}, admission ×"
        f"{total['admit_ms'][1] / total['admit_ms'][0]:.2f}, whole reading ×{reading[1] / reading[0]:.2f}; "
        f"same text {sum(r['same_text'] for r in rows)}/{len(rows)}"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "total": total}, indent=1))


if __name__ == "__main__":
    main()

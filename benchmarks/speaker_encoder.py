"""The speaker encoder's cost per window by batch size (GE2E, 1.2 s windows, float32).

.venv/bin/python benchmarks/speaker_encoder.py [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from voxindex.engine.speakers.history import WINDOW_CHUNKS
from voxindex.engine.speakers.labeller import load_speakers
from voxindex.engine.vad import CHUNK


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    speakers = load_speakers(torch.device(args.device))
    assert speakers is not None, "the speaker encoder's weights are not installed"
    rng = np.random.default_rng(0)
    for batch in (1, 2, 4, 8, 16, 32, 64):
        clips = [0.1 * rng.normal(size=WINDOW_CHUNKS * CHUNK).astype(np.float32) for _ in range(batch)]
        speakers.embeddings(clips)
        started = time.perf_counter()
        for _ in range(args.repeats):
            speakers.embeddings(clips)
        took = (time.perf_counter() - started) / args.repeats
        print(f"batch {batch:3d}: {took * 1000:6.1f} ms a call, {took * 1000 / batch:5.2f} ms a window")


if __name__ == "__main__":
    main()

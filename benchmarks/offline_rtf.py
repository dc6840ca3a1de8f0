"""Offline real-time factor: seconds of compute per second of audio for `voxindex transcribe`.

    .venv/bin/python benchmarks/offline_rtf.py [--model tiny.en] [--device cpu] [--compute-type int8] [FILE]

Without FILE it transcribes the bundled human recordings joined into one 60 s clip. The model
is loaded and warmed up first; only transcription is timed (best of 3).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from voxindex.audio import decode_file
from voxindex.loading import load_model
from voxindex.samples import samples
from voxindex.transcribe import OfflineTranscriber


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file", nargs="?")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--device", default="auto")
    p.add_argument("--compute-type", default="auto")
    args = p.parse_args()
    if args.file:
        audio = decode_file(args.file)
    else:
        gap = np.zeros(8000, np.float32)
        clips = [np.concatenate([decode_file(s.path), gap]) for s in samples()]
        audio = np.concatenate(clips * 5)[: 60 * 16000]
    model = load_model(args.model, args.device, compute_type=args.compute_type)
    transcriber = OfflineTranscriber(model)
    transcriber.transcribe(audio[: 16000 * 5])
    timings = []
    for _ in range(3):
        t = time.perf_counter()
        result = transcriber.transcribe(audio)
        timings.append(time.perf_counter() - t)
    seconds = audio.size / 16000
    print(
        f"model={model.name} device={model.device} compute={model.compute_type} "
        f"threads={torch.get_num_threads()} "
        f"cpu={platform.processor() or platform.machine()} audio={seconds:.1f}s "
        f"best={min(timings):.2f}s RTF={min(timings) / seconds:.3f} "
        f"({seconds / min(timings):.1f}x real time) "
        f"words={len(result.text.split())}"
    )


if __name__ == "__main__":
    main()

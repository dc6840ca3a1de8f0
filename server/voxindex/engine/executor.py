"""Runs one batch through the model: log-mel → encoder → batched decode → word alignment.

The executor knows nothing of streams or queues; the scheduler hands it windows of audio
and gets readings back. One call is one encoder pass and one batched decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.align import Word, word_timings
from voxindex.engine.decode import Decoder, DecodeOptions, Hypothesis
from voxindex.engine.mel import HOP_LENGTH, N_FRAMES, LogMel
from voxindex.engine.policy import is_hallucination, is_silence
from voxindex.models.loader import WhisperModel

# Live windows are padded to at least 15 s and to 10 s past their audio: Whisper's encoder on
# shorter windows loops and hallucinates (BENCHMARKS.md, "encoder window"); windows grow in
# 5-second steps so streams of similar length share a shape.
MIN_WINDOW_FRAMES = 1500
WINDOW_PAD_FRAMES = 1000
WINDOW_STEP_FRAMES = 500
MAX_WINDOW_AUDIO_S = 30.0


@dataclass(frozen=True)
class Job:
    audio: Float32Array  # ≤ 30 s at 16 kHz
    start: float  # stream time of audio[0], added to word times
    prompt: tuple[int, ...] = ()
    language: str | None = None


@dataclass
class Reading:
    words: list[Word] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    language: str | None = None
    rejected: str | None = None  # "silence" or "hallucination": the words are empty

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)


def window_frames(audio_samples: int) -> int:
    frames = audio_samples // HOP_LENGTH + WINDOW_PAD_FRAMES
    frames = -(-frames // WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES
    return max(MIN_WINDOW_FRAMES, min(N_FRAMES, frames))


class Executor:
    def __init__(self, wm: WhisperModel) -> None:
        self.wm = wm
        self.decoder = Decoder(wm)
        self.mel = LogMel(wm.n_mels, wm.device)

    def run(self, jobs: list[Job]) -> list[Reading]:
        clips = [torch.from_numpy(np.ascontiguousarray(j.audio)) for j in jobs]
        frames = max(window_frames(j.audio.size) for j in jobs)
        encoded = self.decoder.encode(self.mel(clips), frames)
        options = [
            DecodeOptions(
                prompt=j.prompt,
                language=j.language or ("auto" if self.wm.multilingual else None),
                align=True,
                num_frames=min(frames, j.audio.size // HOP_LENGTH + 1),
                max_tokens=min(224, 16 + int(j.audio.size / SAMPLE_RATE * 8)),
            )
            for j in jobs
        ]
        hyps = self.decoder.decode(encoded, options)
        return [self._reading(j, h) for j, h in zip(jobs, hyps, strict=True)]

    def _reading(self, job: Job, hyp: Hypothesis) -> Reading:
        tok = self.wm.tokenizer
        if is_silence(hyp):
            return Reading(language=hyp.language, rejected="silence")
        text = tok.decode(hyp.tokens)
        if is_hallucination(hyp, text):
            return Reading(language=hyp.language, rejected="hallucination")
        words: list[Word] = []
        if hyp.attention is not None:
            words = word_timings(tok, hyp.tokens, hyp.token_logprobs, hyp.attention, job.start)
        end = job.start + job.audio.size / SAMPLE_RATE
        words = [
            Word(w.word, min(w.start, end), min(max(w.end, w.start), end), w.confidence) for w in words if w.word
        ]
        return Reading(words, [t for t in hyp.tokens if t < tok.special.eot], hyp.language)

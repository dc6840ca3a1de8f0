"""Runs one batch through the model: log-mel → encoder → batched decode → word alignment.

The executor knows nothing of streams or queues; the scheduler hands it windows of audio
and gets readings back. One call is one encoder pass and one batched decode.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.align import Word, word_timings
from voxindex.engine.decode import DecodeOptions, Decoder, Hypothesis
from voxindex.engine.mel import HOP_LENGTH, N_FRAMES, LogMel
from voxindex.engine.policy import (
    drop_repeated_tail,
    drop_restart,
    has_words,
    is_anomalous,
    is_hallucination,
    is_silence,
    repeats_phrase,
)
from voxindex.models.loader import WhisperModel

log = logging.getLogger("voxindex.engine")

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


@dataclass(frozen=True)
class Timing:
    encode_s: float = 0.0  # log-mel + encoder
    decode_s: float = 0.0  # greedy decode, alignment, retries

    @property
    def total_s(self) -> float:
        return self.encode_s + self.decode_s


class Executor:
    def __init__(self, wm: WhisperModel) -> None:
        self.wm = wm
        self.decoder = Decoder(wm)
        self.mel = LogMel(wm.n_mels, wm.device)
        self.timing = Timing()  # of the latest run

    def run(self, jobs: list[Job]) -> list[Reading]:
        started = time.perf_counter()
        clips = [torch.from_numpy(np.ascontiguousarray(j.audio)) for j in jobs]
        frames = max(window_frames(j.audio.size) for j in jobs)
        encoded = self.decoder.encode(self.mel(clips), frames)
        if encoded.is_cuda:
            torch.cuda.synchronize(encoded.device)  # kernels run async: time the encoder, not its launch
        encoded_at = time.perf_counter()
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
        # A prompt of earlier text sometimes makes Whisper repeat itself or fall silent: prompted
        # rows are judged strictly and read again without it, reusing their encoder output
        # (OpenAI's fallback resets the prompt too). A row without prompt has no second chance,
        # so it is judged as the retry is: a loop is cut back, not thrown away with its words.
        readings = [self._reading(j, h, strict=bool(j.prompt)) for j, h in zip(jobs, hyps, strict=True)]
        retry = [i for i, r in enumerate(readings) if r.rejected and jobs[i].prompt]
        if retry:
            again = self.decoder.decode(encoded[retry], [replace(options[i], prompt=()) for i in retry])
            for i, hyp in zip(retry, again, strict=True):
                readings[i] = self._reading(jobs[i], hyp, strict=False)
        done = time.perf_counter()
        self.timing = Timing(encoded_at - started, done - encoded_at)
        for job, reading in zip(jobs, readings, strict=True):
            log.debug(
                "read %.2f-%.2f prompt=%d rejected=%s %r",
                job.start,
                job.start + job.audio.size / SAMPLE_RATE,
                len(job.prompt),
                reading.rejected,
                reading.text,
            )
        return readings

    def _reading(self, job: Job, hyp: Hypothesis, strict: bool) -> Reading:
        """Judge a hypothesis. ``strict`` also rejects a phrase said twice in a row, which a
        prompted reading produces far more often than a speaker does; a reading without
        prompt is given the benefit of the doubt."""
        tok = self.wm.tokenizer
        if is_silence(hyp):
            return Reading(language=hyp.language, rejected="silence")
        tokens = hyp.tokens if strict else drop_restart(drop_repeated_tail(hyp.tokens))
        text = tok.decode(tokens)
        looped = hyp.looped and len(tokens) == len(hyp.tokens)
        if is_hallucination(looped, text) or (strict and repeats_phrase(text)):
            return Reading(language=hyp.language, rejected="hallucination")
        if not has_words(text):
            return Reading(language=hyp.language, rejected="silence")
        words: list[Word] = []
        if hyp.attention is not None:
            attention = hyp.attention[:, : len(tokens) + 1]
            words = word_timings(tok, tokens, hyp.token_logprobs, attention, job.start)
        if is_anomalous(words):
            return Reading(language=hyp.language, rejected="hallucination")
        end = job.start + job.audio.size / SAMPLE_RATE
        words = [
            Word(w.word, min(w.start, end), min(max(w.end, w.start), end), w.confidence)
            for w in words
            if w.word
        ]
        return Reading(words, [t for t in tokens if t < tok.special.eot], hyp.language)

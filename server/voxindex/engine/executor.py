"""Readings through the model: log-mel → encoder → decode slots → word alignment → judgement.

The executor knows nothing of streams or queues; the scheduler hands it windows of audio
(``admit``), steps it, and gets readings back as they finish (``step``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from voxindex.audio import SAMPLE_RATE
from voxindex.engine.align import word_timings
from voxindex.engine.encoder import encode
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
from voxindex.engine.prompting import echoes_prompt
from voxindex.engine.reading import Job, Reading
from voxindex.engine.runner import Runner
from voxindex.engine.types import DecodeOptions, Hypothesis, Word
from voxindex.models.tokenizer import WhisperTokenizer
from voxindex.models.whisper import WhisperModel

CLOSING_MARKS = (".", "?", "!")

log = logging.getLogger("voxindex.engine")

# Live windows are padded to at least 15 s and to 10 s past their audio: Whisper's encoder on
# shorter windows loops and hallucinates (BENCHMARKS.md, "encoder window"); windows grow in
# 5-second steps so streams of similar length share a shape.
MIN_WINDOW_FRAMES = 1500
WINDOW_PAD_FRAMES = 1000
WINDOW_STEP_FRAMES = 500


def window_frames(audio_samples: int) -> int:
    frames = audio_samples // HOP_LENGTH + WINDOW_PAD_FRAMES
    frames = -(-frames // WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES
    return max(MIN_WINDOW_FRAMES, min(N_FRAMES, frames))


@dataclass(frozen=True)
class Timing:
    encode_s: float = 0.0  # log-mel + encoder + prefill of the latest admission
    decode_s: float = 0.0  # the latest decode step, with alignment and judging of finished rows


@dataclass
class _InFlight:
    job: Job
    options: DecodeOptions
    retried: bool = False


class Executor:
    """Readings in decode slots (continuous batching): ``admit`` runs one encoder pass for new
    jobs and puts them into free slots; ``step`` decodes one token for every row in flight and
    returns the readings that finished. Keys returned by ``admit`` name the readings."""

    def __init__(self, model: WhisperModel, slots: int = 16) -> None:
        self.model = model
        # on CUDA the decode step keeps fixed shapes so warm_up() can capture it as graphs
        self.runner = Runner(model, slots=slots, static_shapes=model.device.type == "cuda")
        self.mel = LogMel(model.n_mels, model.device)
        self.timing = Timing()
        self._rows: dict[int, _InFlight] = {}

    @property
    def free(self) -> int:
        return self.runner.free

    def __len__(self) -> int:
        return len(self._rows)

    def admit(self, jobs: list[Job], threads: int = 0) -> list[int]:
        """Jobs (≤ ``free``) into slots, prefilled: one encoder pass per window length, so a
        reading is encoded as it would be alone and a short window never pays for a long one.
        ``threads``: on a CPU, torch threads for this admission (the count before is restored)."""
        started = time.perf_counter()
        by_window: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            by_window.setdefault(window_frames(job.audio.size), []).append(i)
        keys = [0] * len(jobs)
        with _cpu_threads(threads if self.model.device.type == "cpu" else 0):
            for frames, group in sorted(by_window.items()):
                clips = [torch.from_numpy(np.ascontiguousarray(jobs[i].audio)) for i in group]
                encoded = encode(self.model, self.mel(clips, frames), frames)
                options = [self._options(jobs[i], frames) for i in group]
                for i, key, opt in zip(group, self.runner.admit(encoded, options), options, strict=True):
                    keys[i] = key
                    self._rows[key] = _InFlight(jobs[i], opt)
        self._sync()
        self.timing = Timing(time.perf_counter() - started, self.timing.decode_s)
        return keys

    def _options(self, job: Job, frames: int) -> DecodeOptions:
        return DecodeOptions(
            prompt=job.prompt,
            language=job.language or ("auto" if self.model.multilingual else None),
            task=job.task,
            align=True,
            num_frames=min(frames, job.audio.size // HOP_LENGTH + 1),
            max_tokens=min(224, 16 + int(job.audio.size / SAMPLE_RATE * 8)),
            draft=job.draft,
        )

    def step(self) -> list[tuple[int, Reading]]:
        """One decode step for every row in flight; the readings that finished with it."""
        if not self._rows:
            return []
        started = time.perf_counter()
        done = []
        for key in self.runner.step():
            row = self._rows[key]
            hyp = self.runner.result(key)
            reading = self._reading(row.job, hyp, strict=bool(row.job.prompt) and not row.retried)
            # A prompt of earlier text sometimes makes Whisper repeat itself or fall silent:
            # prompted rows are judged strictly and read again without it in the same slot,
            # reusing its encoder output (OpenAI's fallback resets the prompt too). A row without
            # prompt has no second chance, so it is judged as the retry is: a loop is cut back,
            # not thrown away with its words.
            if reading.rejected and row.job.prompt and not row.retried:
                row.retried = True
                row.options = replace(row.options, prompt=())
                self.runner.restart(key, row.options)
                continue
            self.runner.release(key)
            del self._rows[key]
            self._log(row.job, reading)
            done.append((key, reading))
        self._sync()
        self.timing = Timing(self.timing.encode_s, time.perf_counter() - started)
        return done

    def cancel(self, keys: list[int] | None = None) -> None:
        """Free the slots of these readings (all, by default): their streams no longer need them."""
        for key in list(self._rows) if keys is None else keys:
            if self._rows.pop(key, None) is not None:
                self.runner.release(key)

    def warm_up(self, jobs: list[Job]) -> list[Reading]:
        """Capture the decode step's CUDA graphs (on CUDA), then read ``jobs``: the first calls
        allocate, pick kernels and fill caches, so the first client does not wait for that."""
        if self.model.device.type == "cuda":
            self.runner.capture()
        return self.run(jobs)

    def run(self, jobs: list[Job], threads: int = 0) -> list[Reading]:
        """Read ``jobs`` to the end, admitting them as slots free (warm-up, benchmarks, tests),
        admissions on ``threads`` (``admit``); nothing else may be in flight."""
        if self._rows:
            raise RuntimeError("run() needs an idle executor")
        readings: dict[int, Reading] = {}
        index: dict[int, int] = {}
        waiting = list(range(len(jobs)))
        while waiting or self._rows:
            if waiting and self.free:
                take, waiting = waiting[: self.free], waiting[self.free :]
                for i, key in zip(take, self.admit([jobs[i] for i in take], threads), strict=True):
                    index[key] = i
            for key, reading in self.step():
                readings[index[key]] = reading
        return [readings[i] for i in range(len(jobs))]

    def _sync(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)  # kernels run async: time the work, not its launch

    def _log(self, job: Job, reading: Reading) -> None:
        log.debug(
            "read %.2f-%.2f prompt=%d rejected=%s %r",
            job.start,
            job.start + job.audio.size / SAMPLE_RATE,
            len(job.prompt),
            reading.rejected,
            reading.text,
        )

    def _reading(self, job: Job, hyp: Hypothesis, strict: bool) -> Reading:
        """Judge a hypothesis. ``strict`` also rejects a phrase said twice in a row, which a
        prompted reading produces far more often than a speaker does, and a reading that echoes
        its key terms or context (prompting.echoes_prompt); a reading without prompt is given
        the benefit of the doubt."""
        tok = self.model.tokenizer
        if is_silence(hyp):
            return Reading(language=hyp.language, rejected="silence")
        tokens = hyp.tokens if strict else drop_restart(drop_repeated_tail(hyp.tokens))
        text = tok.decode(tokens)
        looped = hyp.looped and len(tokens) == len(hyp.tokens)
        if is_hallucination(looped, text) or (
            strict and (repeats_phrase(text) or echoes_prompt(text, job.prompting))
        ):
            return Reading(language=hyp.language, rejected="hallucination")
        if not has_words(text):
            return Reading(language=hyp.language, rejected="silence")
        words: list[Word] = []
        if hyp.attention is not None:
            attention = hyp.attention[:, : len(tokens) + 1]
            words = word_timings(tok, tokens, hyp.token_logprobs, attention, job.start)
        # the anomaly rule reads word probabilities and alignment, both of which a translation
        # lacks (its words are not the sounds): translations keep the silence and loop guards
        if job.task != "translate" and is_anomalous(words):
            return Reading(language=hyp.language, rejected="hallucination")
        end = job.start + job.audio.size / SAMPLE_RATE
        words = [
            Word(w.word, min(w.start, end), min(max(w.end, w.start), end), w.confidence)
            for w in words
            if w.word
        ]
        text_tokens = [t for t in tokens if t < tok.special.eot]
        return Reading(words, text_tokens, hyp.language, closing=_closing(tok, tokens, hyp.token_logprobs))


@contextmanager
def _cpu_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside (0: left as they are), restored after."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != before:
            torch.set_num_threads(before)


def _closing(tok: WhisperTokenizer, tokens: list[int], logprobs: list[float]) -> float | None:
    """The probability of the text's closing mark (its last text token, if "." "?" or "!")."""
    for i in range(min(len(tokens), len(logprobs)) - 1, -1, -1):
        if tokens[i] < tok.special.eot:
            return math.exp(logprobs[i]) if tok.decode([tokens[i]]).strip() in CLOSING_MARKS else None
    return None

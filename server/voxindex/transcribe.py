"""Offline transcription of whole files: 30-second windows, seeking by Whisper's own timestamps.

Each window is decoded with timestamp tokens; complete segments are kept and the next
window starts where the last complete segment ended, so no word is cut at a window edge.
Silero VAD over the whole file skips windows without speech and catches Whisper stopping
early: when speech follows the last segment it read, the next window starts there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.align import word_timings
from voxindex.engine.encoder import encode
from voxindex.engine.mel import HOP_LENGTH, N_SAMPLES, LogMel
from voxindex.engine.policy import is_hallucination, is_silence, repeats_phrase
from voxindex.engine.prompting import PROMPT_TOKENS
from voxindex.engine.runner import Runner
from voxindex.engine.runner.vocabulary import TIMESTAMP_RESOLUTION_S
from voxindex.engine.types import DecodeOptions, Hypothesis, Word, word_dict
from voxindex.engine.vad import CHUNK_S, Vad, VadState
from voxindex.models.whisper import WhisperModel


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    speaker: int | None = None  # diarized: the label of most of its words' time


@dataclass
class Transcript:
    text: str
    segments: list[Segment]
    duration: float
    model: str
    language: str | None

    def to_json(self, words: bool = False) -> dict[str, Any]:
        segments = []
        for s in self.segments:
            item: dict[str, Any] = {"start": s.start, "end": s.end, "text": s.text}
            if words:
                item["words"] = [word_dict(w) for w in s.words]
            if s.speaker is not None:
                item["speaker"] = s.speaker
            segments.append(item)
        return {
            "text": self.text,
            "segments": segments,
            "duration": self.duration,
            "model": self.model,
            "language": self.language,
        }


SPEECH_PROBABILITY = 0.5
MIN_SPEECH_S = 0.25
WORD_EARLY_S = 0.5  # a word's aligned start may fall this far before its segment's timestamp


def _owner(bounds: list[tuple[float, float]], start: float) -> int | None:
    """The one segment a word starting at ``start`` belongs to: the segment whose span holds
    it, else one it starts just before (alignment runs early); None past every segment (text
    the next window reads again)."""
    for i, (begin, end) in enumerate(bounds):
        if begin <= start < end:
            return i
    for i, (begin, end) in enumerate(bounds):
        if begin - WORD_EARLY_S <= start < end:
            return i
    return None


def _has_speech(speech: npt.NDArray[np.bool_], start_s: float, end_s: float) -> bool:
    """Whether the VAD heard at least MIN_SPEECH_S of speech between two times."""
    a, b = max(0, int(start_s / CHUNK_S)), max(0, int(end_s / CHUNK_S) + 1)
    return int(speech[a:b].sum()) * CHUNK_S >= MIN_SPEECH_S


class OfflineTranscriber:
    """Transcribes whole recordings with one loaded model."""

    def __init__(self, model: WhisperModel) -> None:
        self.model = model
        self.runner = Runner(model, slots=1)
        self.mel = LogMel(model.n_mels, model.device)
        self.vad = Vad()

    def transcribe(
        self,
        audio: Float32Array,
        language: str | None = None,
        words: bool = False,
        prompt_text: str = "",
        task: str = "transcribe",
        found_segment: Callable[[Segment], None] | None = None,
    ) -> Transcript:
        """``prompt_text`` primes the first window (spellings, names, style), as Whisper's prompt;
        ``task="translate"`` gives English text of any language (multilingual models);
        ``found_segment`` is told of each segment as soon as its window is read."""
        segments: list[Segment] = []
        primer = prompt_text.strip()
        prompt = self.model.tokenizer.encode(" " + primer)[-PROMPT_TOKENS:] if primer else []
        speech = self.vad([VadState()], [audio])[0] >= SPEECH_PROBABILITY
        seek = 0
        while seek < audio.size:
            window = audio[seek : seek + N_SAMPLES]
            if window.size < HOP_LENGTH:  # a few samples of tail cannot hold a word
                break
            offset = seek / SAMPLE_RATE
            if not _has_speech(speech, offset, offset + window.size / SAMPLE_RATE):
                seek += window.size  # nothing to read, nothing for Whisper to hallucinate on
                continue
            hyp = self._decode(window, prompt, language, words, task)
            if self.model.multilingual and language in (None, "auto"):
                language = hyp.language
            if is_silence(hyp):
                seek += window.size
                continue
            found, consumed, kept = self._segments(hyp, window.size, offset, words)
            read_until = found[-1].end - offset if found else 0.0
            if (
                consumed >= window.size
                and read_until >= 1.0
                and _has_speech(speech, offset + read_until + 0.3, offset + window.size / SAMPLE_RATE)
            ):
                consumed = int(read_until * SAMPLE_RATE)  # Whisper stopped early: read the rest again
            said = [s for s in found if s.text]
            segments += said
            if found_segment is not None:
                for segment in said:
                    found_segment(segment)
            prompt = (prompt + kept)[-PROMPT_TOKENS:]
            seek += max(consumed, HOP_LENGTH)
        text = " ".join(s.text for s in segments).strip()
        return Transcript(text, segments, round(audio.size / SAMPLE_RATE, 3), self.model.name, language)

    def _decode(
        self, window: Float32Array, prompt: list[int], language: str | None, words: bool, task: str
    ) -> Hypothesis:
        encoded = encode(self.model, self.mel([torch.from_numpy(np.ascontiguousarray(window))]))
        options = DecodeOptions(
            prompt=tuple(prompt),
            language=language or ("auto" if self.model.multilingual else None),
            task=task,
            timestamps=True,
            align=words,
            num_frames=window.size // HOP_LENGTH,
        )
        hyp = self.runner.decode(encoded, [options])[0]
        if prompt and self._suspect(hyp):  # loops and silences often come from the prompt
            retry = self.runner.decode(encoded, [replace(options, prompt=())])[0]
            if not self._suspect(retry):
                return retry
        return hyp

    def _suspect(self, hyp: Hypothesis) -> bool:
        text = self.model.tokenizer.decode(hyp.tokens)
        return is_silence(hyp) or is_hallucination(hyp.looped, text) or repeats_phrase(text)

    def _segments(
        self, hyp: Hypothesis, window_samples: int, offset: float, words: bool
    ) -> tuple[list[Segment], int, list[int]]:
        """Split a timestamped hypothesis into segments; return them and the samples consumed."""
        tok = self.model.tokenizer
        tb = tok.special.timestamp_begin
        tokens = hyp.tokens
        is_ts = [t >= tb for t in tokens]

        def seconds(t: int) -> float:
            return (t - tb) * TIMESTAMP_RESOLUTION_S

        all_words = (
            word_timings(tok, tokens, hyp.token_logprobs, hyp.attention, offset)
            if hyp.attention is not None
            else []
        )
        spans: list[tuple[float, float, list[int]]] = []
        start_ts: int | None = None
        current: list[int] = []
        for t, ts in zip(tokens, is_ts, strict=True):
            if not ts:
                current.append(t)
            elif start_ts is None:
                start_ts = t
            else:
                if current:
                    spans.append((seconds(start_ts), seconds(t), current))
                    current, start_ts = [], None
                else:
                    start_ts = t
        window_s = window_samples / SAMPLE_RATE
        complete_end = spans[-1][1] if spans else None
        ends_single = len(tokens) >= 1 and is_ts[-1] and (len(tokens) < 2 or not is_ts[-2])
        full_window = window_samples == N_SAMPLES
        if current and full_window and complete_end is not None:
            consumed = int(complete_end * SAMPLE_RATE)  # cut mid-speech: the next window re-reads it
        elif current:  # the last window: unclosed text runs to its end
            begin = seconds(start_ts) if start_ts is not None else (complete_end or 0.0)
            spans.append((begin, window_s, current))
            consumed = window_samples
        elif spans and not ends_single and complete_end is not None and full_window:
            consumed = int(complete_end * SAMPLE_RATE)
        else:
            consumed = window_samples
        bounds = [(begin + offset, end + offset) for begin, end, _ in spans]
        owned: list[list[Word]] = [[] for _ in spans]
        for w in all_words:
            i = _owner(bounds, w.start)
            if i is not None:
                owned[i].append(w)
        segments = []
        for (begin, end, ids), seg_words in zip(spans, owned, strict=True):
            segments.append(
                Segment(
                    round(begin + offset, 3),
                    round(min(end, window_s) + offset, 3),
                    tok.decode(ids).strip(),
                    seg_words,
                )
            )
        return segments, consumed, [t for _, _, ids in spans for t in ids]

"""The engine's shared types, free of torch: what index/, api/ and the store may import.

A word with its timing, the options one decoder row runs under, what one row decoded, and what
a client asked of its stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

WINDOW_FRAMES = 3000  # log-mel frames of Whisper's 30-second window


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float
    speaker: int | None = None  # a diarized stream's or recording's label (0, 1, …), stable per stream
    speaker_confidence: float | None = None


def word_dict(w: Word) -> dict[str, object]:
    """A word as JSON: speaker fields only where the word has a speaker."""
    d: dict[str, object] = {"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}
    if w.speaker is not None:
        d["speaker"] = w.speaker
        d["speaker_confidence"] = w.speaker_confidence
    return d


@dataclass(frozen=True)
class DecodeOptions:
    """What to decode for one row of a batch."""

    prompt: tuple[int, ...] = ()
    language: str | None = None  # None: English-only model or English; "auto": detect
    task: str = "transcribe"  # or "translate": English text of any language (multilingual models)
    timestamps: bool = False
    max_tokens: int = 224
    align: bool = False
    num_frames: int = WINDOW_FRAMES  # mel frames holding real audio, for alignment
    # tokens the row will likely decode (the stream's previous reading of the same window):
    # checked after the prefill and kept as far as greedy decoding agrees (Runner._take_draft)
    draft: tuple[int, ...] = ()


@dataclass
class Hypothesis:
    """The decoded tokens of one row and what the policy needs to judge them."""

    tokens: list[int]
    token_logprobs: list[float]
    no_speech_prob: float
    language: str | None
    looped: bool = False
    # (alignment heads, rows, frames/2): cross-attention of the query predicting each token (+ eot)
    attention: torch.Tensor | None = field(default=None, repr=False)
    # best minus second-best logit at each step, when asked for (tests tell near-ties by it)
    margins: list[float] | None = field(default=None, repr=False)

    @property
    def avg_logprob(self) -> float:
        return sum(self.token_logprobs) / max(1, len(self.token_logprobs))


@dataclass(frozen=True)
class TurnOptions:
    """A stream that asks for turn-taking (``/v2/listen``, ``turns=true`` on ``/v1/stream``):
    its turn ends where the end-of-turn probability (engine/turns/) reaches ``eot_threshold``,
    an eager end is announced at ``eager_threshold`` (None: never), and ``eot_timeout_s`` of
    silence ends a turn whatever the probability says."""

    eot_threshold: float = 0.7
    eager_threshold: float | None = None
    eot_timeout_s: float = 5.0
    # what decides (the server's setting, for benchmarks/turns.py): "fused" (acoustic, words and
    # silence), "acoustic" (Smart Turn alone) or "silence" (today's endpointing: 500 ms of it)
    evidence: str = "fused"


@dataclass(frozen=True)
class StreamOptions:
    """What a client asked of its stream (validated by the protocol adapters)."""

    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    language: str | None = None
    interim_results: bool = True
    endpointing_ms: int = 500
    vad: bool = True
    vad_threshold: float = 0.5  # a chunk this likely speech starts speech (engine/vad.py)
    diarize: bool = False  # speaker labels on words and finals (engine/speakers/)
    task: str = "transcribe"  # or "translate" (multilingual models): English text
    keyterms: tuple[str, ...] = ()  # names and terms to listen for (engine/prompting.py)
    context: str = ""  # conversation context the stream starts with
    record: bool = False  # keep the stream's audio (index/stream_audio.py), deleted with the stream
    turns: TurnOptions | None = None  # turn events; None: utterances end at ``endpointing_ms`` of silence

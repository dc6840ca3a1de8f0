"""What the scheduler hands the executor (a ``Job``: a window of one stream's audio) and what it
gets back (a ``Reading``: the words the model heard, or why none were kept)."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.prompting import Prompting
from voxindex.engine.types import Word

MAX_WINDOW_AUDIO_S = 30.0  # Whisper reads at most 30 s at once


@dataclass(frozen=True)
class Job:
    audio: Float32Array  # ≤ 30 s at 16 kHz
    start: float  # stream time of audio[0], added to word times
    prompt: tuple[int, ...] = ()
    language: str | None = None
    task: str = "transcribe"
    prompting: Prompting = field(default_factory=Prompting)  # what the prompt holds besides past text
    draft: tuple[int, ...] = ()  # the tokens a previous reading of this window decoded (a guess)

    @property
    def end(self) -> float:
        """Stream time just past the window's audio."""
        return self.start + self.audio.size / SAMPLE_RATE


@dataclass
class Reading:
    words: list[Word] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    language: str | None = None
    rejected: str | None = None  # "silence" or "hallucination": the words are empty
    # the probability the decoder gave the mark that closes the text (".", "?", "!"), if one does
    closing: float | None = None

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

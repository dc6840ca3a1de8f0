"""The one internal event model. Protocol adapters translate these to their wire formats."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxindex.engine.types import Word


@dataclass(frozen=True)
class Ready:
    stream_id: str
    model: str
    sample_rate: int


@dataclass(frozen=True)
class SpeechStarted:
    time: float


@dataclass(frozen=True)
class Interim:
    segment_id: int
    text: str
    start: float
    end: float
    stable_text: str


@dataclass(frozen=True)
class Final:
    segment_id: int
    text: str
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    language: str | None = None
    reason: str = "endpoint"  # why now: endpoint | flush | close | window (25 s) | sentence (long monologue)
    speaker: int | None = None  # diarized: the label of most of its words' time


@dataclass(frozen=True)
class SpeechEnded:
    time: float


@dataclass(frozen=True)
class Closed:
    duration: float
    segments: int


@dataclass(frozen=True)
class Error:
    code: str
    message: str


Event = Ready | SpeechStarted | Interim | Final | SpeechEnded | Closed | Error

"""Typed events mirroring the native protocol (docs/protocol.md). Times are seconds from the
first sample sent in the session, continuous across reconnects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float
    speaker: int | None = None  # diarize=true: the word's speaker label (0, 1, …)
    speaker_confidence: float | None = None


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
    stream_id: str = ""
    speaker: int | None = None  # diarize=true: the label of most of its words' time


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


@dataclass(frozen=True)
class Reconnected:
    """The connection dropped and a new stream took over; times go on from ``offset``."""

    stream_id: str
    offset: float


Event = Ready | SpeechStarted | Interim | Final | SpeechEnded | Closed | Error | Reconnected


def parse(message: dict[str, Any], offset: float = 0.0, stream_id: str = "") -> Event | None:
    """A server message → an event, its times shifted by ``offset``; None for unknown types."""
    kind = message.get("type")
    if kind == "ready":
        return Ready(message["stream_id"], message["model"], message["sample_rate"])
    if kind == "speech_started":
        return SpeechStarted(message["time"] + offset)
    if kind == "interim":
        return Interim(
            message["segment_id"],
            message["text"],
            message["start"] + offset,
            message["end"] + offset,
            message["stable_text"],
        )
    if kind == "final":
        words = [
            Word(
                w["word"],
                w["start"] + offset,
                w["end"] + offset,
                w["confidence"],
                w.get("speaker"),
                w.get("speaker_confidence"),
            )
            for w in message["words"]
        ]
        return Final(
            message["segment_id"],
            message["text"],
            message["start"] + offset,
            message["end"] + offset,
            words,
            message.get("language"),
            stream_id,
            message.get("speaker"),
        )
    if kind == "speech_ended":
        return SpeechEnded(message["time"] + offset)
    if kind == "closed":
        return Closed(message["duration"] + offset, message["segments"])
    if kind == "error":
        return Error(message["code"], message["message"])
    return None

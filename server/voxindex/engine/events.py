"""The one internal event model. Protocol adapters translate these to their wire formats."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from voxindex.engine.types import TurnOptions, Word


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


class TurnEvent(enum.Enum):
    """What a ``TurnInfo`` says (Deepgram Flux's event names on ``/v2/listen``)."""

    STARTED = "StartOfTurn"  # the user started speaking
    UPDATE = "Update"  # the turn's transcript so far (about every 0.25 s of audio)
    EAGER_END = "EagerEndOfTurn"  # probably done: an agent may start its reply now
    RESUMED = "TurnResumed"  # not done after all: the eager end is withdrawn
    END = "EndOfTurn"  # done: the turn's final transcript


@dataclass(frozen=True)
class TurnInfo:
    """A turn-taking stream's view of its current turn (``StreamOptions.turns``)."""

    event: TurnEvent
    index: int  # turns of the stream, from 0
    start: float  # the turn's audio: stream times
    end: float
    words: list[Word] = field(default_factory=list)
    end_of_turn_probability: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)


@dataclass(frozen=True)
class Flushed:
    """A client's flush is done: every final of the audio sent before it went out before this
    (none, if no speech was heard since the last final)."""

    time: float


@dataclass(frozen=True)
class Configured:
    """A client's mid-stream change took effect (``error``: it was refused; nothing changed)."""

    keyterms: tuple[str, ...] | None = None
    turns: TurnOptions | None = None
    error: str | None = None


@dataclass(frozen=True)
class Closed:
    duration: float
    segments: int


@dataclass(frozen=True)
class Error:
    code: str
    message: str
    param: str | None = None  # the client's field at fault, where a protocol names it
    event_id: str | None = None  # the client message it answers, where a protocol names those


Event = (
    Ready | SpeechStarted | Interim | Final | SpeechEnded | TurnInfo | Flushed | Configured | Closed | Error
)

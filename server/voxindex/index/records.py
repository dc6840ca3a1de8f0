"""What the transcript store holds, as plain records: streams, segments, recordings, search
filters, and the outbox a replica sends to a shared store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from voxindex.engine.types import Word, word_dict


@dataclass(frozen=True)
class StreamRecord:
    id: str
    tenant: str
    model: str
    created: float
    closed: float | None
    metadata: dict[str, Any]
    segments: int


@dataclass(frozen=True)
class Segment:
    id: int
    stream_id: str
    segment_index: int
    start: float
    end: float
    text: str
    words: list[Word]
    language: str | None
    model: str
    created: float
    speaker: int | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["words"] = [word_dict(w) for w in self.words]
        if self.speaker is None:
            del d["speaker"]
        return d


@dataclass(frozen=True)
class RecordingRecord:
    id: str
    tenant: str
    filename: str
    sha256: str
    media: str
    status: str  # queued | transcribing | indexed | failed
    reason: str | None
    duration: float | None
    done_s: float
    language: str | None
    model: str
    reused_from: str | None
    created: float
    updated: float
    segments: int
    task: str = "transcribe"  # or "translate": English text

    @property
    def progress(self) -> float:
        if self.status == "indexed":
            return 1.0
        if not self.duration:
            return 0.0
        return round(min(1.0, self.done_s / self.duration), 4)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["media"], d["tenant"]
        d["progress"] = self.progress
        return d


@dataclass(frozen=True)
class Filters:
    """Restrictions every search and listing honours."""

    tenant: str | None = None
    stream_id: str | None = None
    since: float | None = None  # unix seconds, on the segment's commit time
    until: float | None = None
    speaker: int | None = None  # diarized segments whose dominant speaker is this label


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    kind: str
    stream_id: str
    ref: int | None

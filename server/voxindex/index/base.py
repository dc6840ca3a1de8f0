"""What the server needs from a transcript index, whichever store holds it.

Two implementations, chosen by ``--store``: ``LiveIndex`` (``sqlite://``, the default: SQLite +
FAISS on local disk) and ``MilvusIndex`` (``milvus://host:port/collection``: segments, vectors
and BM25 in Milvus, shared by every replica). Both pass the same contract tests
(tests/index/test_contract.py). Recording jobs are per replica (their media is on its disk):
their catalog is always the local SQLite store, ``catalog``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from voxindex.engine.events import Final
from voxindex.index.records import Filters, Segment, StreamRecord
from voxindex.index.relevance import DEFAULT_MIN_SCORE
from voxindex.index.search import Hit, Mode
from voxindex.index.sqlite import Store


@dataclass(frozen=True)
class IndexStats:
    kind: str  # the vector index: "flat" or "ivf" (FAISS), "milvus"
    segments: int
    vectors: int
    pending: int  # committed but not yet searchable (embedding, or awaiting the remote store)
    available: bool = True  # the shared store answered the latest write (always, embedded)


class TranscriptIndex(Protocol):
    catalog: Store

    # -- the engine's sinks (TranscriptSink, RecordingSink): on the engine thread, never blocking --
    def open_stream(self, stream_id: str, model: str, tenant: str) -> None: ...

    def commit(self, stream_id: str, final: Final, model: str) -> int: ...

    def deliver(self, stream_id: str, send: Callable[[], None]) -> None: ...

    def close_stream(self, stream_id: str, duration: float | None = None) -> None: ...

    def commit_window(self, recording_id: str, finals: list[Final], done_s: float, model: str) -> None: ...

    def finish_recording(self, recording_id: str, language: str | None) -> None: ...

    def fail_recording(self, recording_id: str, reason: str) -> None: ...

    def reuse_transcript(self, source: str, target: str) -> None: ...

    # -- reads and deletes, for the API --
    def search(
        self, query: str, k: int, mode: Mode, filters: Filters, min_score: float = DEFAULT_MIN_SCORE
    ) -> list[Hit]:
        """Up to ``k`` hits with a relevance of at least ``min_score`` (index/relevance.py), best first."""
        ...

    def list_streams(self, tenant: str | None, limit: int = 100, offset: int = 0) -> list[StreamRecord]: ...

    def get_stream(self, stream_id: str, tenant: str | None = None) -> StreamRecord | None: ...

    def segments_of(self, stream_id: str) -> list[Segment]: ...

    def delete_stream(self, stream_id: str, tenant: str | None = None) -> bool: ...

    def stats(self) -> IndexStats: ...

    def close(self) -> None: ...

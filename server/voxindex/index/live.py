"""The embedded transcript index (``--store sqlite://``, the default): SQLite + FAISS on local
disk, as one object the app owns: store + embedder + indexer + searcher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voxindex.engine.events import Final
from voxindex.index.base import IndexStats
from voxindex.index.embed import Embedder
from voxindex.index.indexer import Indexer
from voxindex.index.records import Filters, Segment, StreamRecord
from voxindex.index.relevance import DEFAULT_MIN_SCORE
from voxindex.index.search import Hit, Mode, Searcher
from voxindex.index.sqlite import STORE_FILE, Store


@dataclass
class LiveIndex:
    store: Store
    indexer: Indexer
    searcher: Searcher
    catalog: Store = field(init=False)  # recordings: the same SQLite store

    def __post_init__(self) -> None:
        self.catalog = self.store

    @classmethod
    def open(cls, data_dir: Path, ivf_threshold: int = 200_000, device: str = "cpu") -> LiveIndex:
        """``device`` "cuda": embeddings and vector search on the GPU (the engine's device)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(data_dir / STORE_FILE)
        embedder = Embedder(device)
        indexer = Indexer(store, embedder, data_dir / "vectors.faiss", ivf_threshold, gpu=device == "cuda")
        indexer.start()
        return cls(store, indexer, Searcher(store, indexer.vectors, embedder))

    def open_stream(self, stream_id: str, model: str, tenant: str) -> None:
        self.store.create_stream(stream_id, tenant, model)

    def close_stream(self, stream_id: str, duration: float | None = None) -> None:
        self.store.close_stream(stream_id, duration)

    def commit(self, stream_id: str, final: Final, model: str) -> int:
        """Durable first (the caller sends `final` only after this returns), searchable soon after."""
        segment_id = self.store.commit_segment(stream_id, final, model)
        self.indexer.submit(segment_id)
        return segment_id

    def deliver(self, stream_id: str, send: Callable[[], None]) -> None:
        send()  # commit() returned: already durable

    # ---------------- reads ----------------
    def search(
        self, query: str, k: int, mode: Mode, filters: Filters, min_score: float = DEFAULT_MIN_SCORE
    ) -> list[Hit]:
        return self.searcher.search(query, k, mode, filters, min_score)

    def list_streams(self, tenant: str | None, limit: int = 100, offset: int = 0) -> list[StreamRecord]:
        return self.store.list_streams(tenant, limit=limit, offset=offset)

    def get_stream(self, stream_id: str, tenant: str | None = None) -> StreamRecord | None:
        return self.store.get_stream(stream_id, tenant)

    def segments_of(self, stream_id: str) -> list[Segment]:
        return self.store.segments_of(stream_id)

    def stats(self) -> IndexStats:
        vectors = self.indexer.vectors
        segments = self.store.count_segments()
        return IndexStats(
            vectors.kind, segments, vectors.size, self.indexer.pending(), self.store.fault is None
        )

    # ---------------- recordings (the engine's RecordingSink) ----------------
    def commit_window(self, recording_id: str, finals: list[Final], done_s: float, model: str) -> None:
        for segment_id in self.store.commit_window(recording_id, finals, done_s, model):
            self.indexer.submit(segment_id)

    def finish_recording(self, recording_id: str, language: str | None) -> None:
        self.store.update_recording(recording_id, status="indexed", language=language)
        self.store.close_stream(recording_id)

    def fail_recording(self, recording_id: str, reason: str) -> None:
        self.store.update_recording(recording_id, status="failed", reason=reason)

    def reuse_transcript(self, source: str, target: str) -> None:
        for segment_id in self.store.copy_segments(source, target):
            self.indexer.submit(segment_id)

    def delete_stream(self, stream_id: str, tenant: str | None = None) -> bool:
        ids = self.store.delete_stream(stream_id, tenant)
        if ids is None:
            return False
        self.indexer.remove(ids)
        return True

    def close(self) -> None:
        self.indexer.stop()
        self.store.close()

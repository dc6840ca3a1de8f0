"""The live index as one object the app owns: store + embedder + indexer + searcher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxindex.engine.events import Final
from voxindex.index.embed import Embedder
from voxindex.index.indexer import Indexer
from voxindex.index.search import Searcher
from voxindex.index.store import Store


@dataclass
class LiveIndex:
    store: Store
    indexer: Indexer
    searcher: Searcher

    @classmethod
    def open(cls, data_dir: Path, ivf_threshold: int = 200_000) -> LiveIndex:
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(data_dir / "transcripts.sqlite3")
        embedder = Embedder()
        indexer = Indexer(store, embedder, data_dir / "vectors.faiss", ivf_threshold)
        indexer.start()
        return cls(store, indexer, Searcher(store, indexer.vectors, embedder))

    def open_stream(self, stream_id: str, model: str, tenant: str) -> None:
        self.store.create_stream(stream_id, tenant, model)

    def close_stream(self, stream_id: str) -> None:
        self.store.close_stream(stream_id)

    def commit(self, stream_id: str, final: Final, model: str) -> int:
        """Durable first (the caller sends `final` only after this returns), searchable soon after."""
        segment_id = self.store.commit_segment(stream_id, final, model)
        self.indexer.submit(segment_id)
        return segment_id

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

"""Hybrid search: FTS5 keyword hits and vector hits fused by reciprocal rank."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from voxindex.index.embed import Embedder
from voxindex.index.records import Filters, Segment
from voxindex.index.sqlite import Store
from voxindex.index.vectors import VectorIndex

RRF_K = 60  # the usual constant of reciprocal rank fusion
CANDIDATES = 50  # hits taken from each side before fusion


class Mode(enum.StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


@dataclass(frozen=True)
class Hit:
    segment: Segment
    score: float
    before: str
    after: str
    recording: bool = False  # the segment is from an uploaded recording (id = stream id)

    def to_json(self) -> dict[str, Any]:
        s = self.segment
        return {
            "segment_id": s.id,
            "stream_id": s.stream_id,
            "recording_id": s.stream_id if self.recording else None,
            "segment_index": s.segment_index,
            "text": s.text,
            "start": s.start,
            "end": s.end,
            "created": s.created,
            "score": round(self.score, 6),
            "context": {"before": self.before, "after": self.after},
            **({"speaker": s.speaker} if s.speaker is not None else {}),
        }


class Searcher:
    def __init__(self, store: Store, vectors: VectorIndex, embedder: Embedder) -> None:
        self.store = store
        self.vectors = vectors
        self.embedder = embedder

    def search(self, query: str, k: int, mode: Mode, filters: Filters) -> list[Hit]:
        ranked: list[tuple[int, float]]
        if mode == Mode.KEYWORD:
            ranked = self.store.keyword_search(query, k, filters)
        elif mode == Mode.VECTOR:
            ranked = self._vector(query, k, filters)
        else:
            ranked = fuse(
                [
                    self.store.keyword_search(query, CANDIDATES, filters),
                    self._vector(query, CANDIDATES, filters),
                ],
                k,
            )
        segments = self.store.get_segments([i for i, _ in ranked])
        recordings = self.store.recording_ids({s.stream_id for s in segments.values()})
        hits = []
        for i, score in ranked:
            if i in segments:
                before, after = self.store.neighbours(segments[i])
                hits.append(Hit(segments[i], score, before, after, segments[i].stream_id in recordings))
        return hits[:k]

    def _vector(self, query: str, k: int, filters: Filters) -> list[tuple[int, float]]:
        filtered = any(
            v is not None for v in (filters.tenant, filters.stream_id, filters.since, filters.until)
        )
        allowed = self.store.ids_matching(filters) if filtered else None
        return self.vectors.search(self.embedder([query])[0], k, allowed)


def fuse(rankings: list[list[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each list contributes 1 / (RRF_K + rank) per id."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (i, _) in enumerate(ranking, start=1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:k]

"""Search over what was said: keyword hits (FTS5) and vector hits (MiniLM + FAISS) found, then
ranked and cut by one relevance (index/relevance.py), whichever side found them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voxindex.index.embed import Embedder
from voxindex.index.records import Filters, Segment
from voxindex.index.relevance import DEFAULT_MIN_SCORE, query_terms, relevance
from voxindex.index.sqlite import Store
from voxindex.index.vectors import VectorIndex

CANDIDATES = 50  # hits taken from each side before they are scored


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

    def search(
        self, query: str, k: int, mode: Mode, filters: Filters, min_score: float = DEFAULT_MIN_SCORE
    ) -> list[Hit]:
        """The ``k`` segments most likely to say what ``query`` asks, at least ``min_score`` sure
        (index/relevance.py): keyword mode looks among the segments that say one of its words,
        vector mode among the nearest in meaning, hybrid among both."""
        vector = self.embedder([query])[0]
        cosines: dict[int, float] = {}
        if mode != Mode.KEYWORD:
            cosines.update(self._vector(vector, CANDIDATES, filters))
        found = list(cosines)
        if mode != Mode.VECTOR:
            found += [i for i, _ in self.store.keyword_search(query, CANDIDATES, filters) if i not in cosines]
        cosines.update(self.vectors.cosines(vector, [i for i in found if i not in cosines]))
        segments = self.store.get_segments(found)
        unindexed = [i for i in found if i in segments and i not in cosines]  # not embedded yet
        if unindexed:
            embedded = self.embedder([segments[i].text for i in unindexed])
            cosines.update(zip(unindexed, (embedded @ vector).tolist(), strict=True))
        candidates = {i: (segments[i].text, cosines[i]) for i in found if i in segments}
        ranked = rank(query, candidates, k, min_score)
        recordings = self.store.recording_ids({segments[i].stream_id for i, _ in ranked})
        hits = []
        for i, score in ranked:
            before, after = self.store.neighbours(segments[i])
            hits.append(Hit(segments[i], score, before, after, segments[i].stream_id in recordings))
        return hits

    def _vector(self, vector: npt.NDArray[np.float32], k: int, filters: Filters) -> list[tuple[int, float]]:
        filtered = any(
            v is not None for v in (filters.tenant, filters.stream_id, filters.since, filters.until)
        )
        allowed = self.store.ids_matching(filters) if filtered else None
        return self.vectors.search(vector, k, allowed)


def rank(
    query: str, candidates: dict[int, tuple[str, float]], k: int, min_score: float
) -> list[tuple[int, float]]:
    """The best ``k`` of ``candidates`` (id: (text, cosine with the query)) by relevance, each at
    least ``min_score``; ties keep the order they came in."""
    terms = query_terms(query)
    scored = [(i, relevance(terms, text, cosine)) for i, (text, cosine) in candidates.items()]
    scored.sort(key=lambda hit: hit[1], reverse=True)
    return [(i, score) for i, score in scored if score >= min_score][:k]

"""The store's final segments: committed, read back, and searched by keyword (FTS5)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from voxindex.engine.events import Final
from voxindex.engine.types import Word, word_dict
from voxindex.index.records import Filters, Segment
from voxindex.index.relevance import keyword_terms
from voxindex.index.sqlite.connection import Database

INSERT_SEGMENT = (
    "INSERT INTO segments(stream_id, segment_index, start, end, text, words, language, model, created,"
    " speaker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SegmentTable(Database):
    def commit_segment(self, stream_id: str, final: Final, model: str) -> int:
        """Durably store one final segment; returns its id."""
        with self._writing() as db:
            cur = db.execute(INSERT_SEGMENT, segment_row(stream_id, final, model))
            segment_id = int(cur.lastrowid or 0)
            self._out("segment", stream_id, segment_id)
        return segment_id

    def copy_segments(self, source: str, target: str) -> list[int]:
        """Reuse a finished transcript for identical content: the segments, under another id."""
        with self._writing() as db:
            db.execute(
                "INSERT INTO segments(stream_id, segment_index, start, end, text, words, language, model,"
                " created, speaker) SELECT ?, segment_index, start, end, text, words, language, model, ?,"
                " speaker FROM segments WHERE stream_id = ? ORDER BY segment_index",
                (target, time.time(), source),
            )
            rows = db.execute("SELECT id FROM segments WHERE stream_id = ?", (target,)).fetchall()
            for r in rows:
                self._out("segment", target, int(r[0]))
        return [int(r[0]) for r in rows]

    def segments_of(self, stream_id: str) -> list[Segment]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM segments WHERE stream_id = ? ORDER BY segment_index, id", (stream_id,)
            ).fetchall()
        return [_segment(r) for r in rows]

    def get_segments(self, ids: Sequence[int]) -> dict[int, Segment]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._reading() as db:
            rows = db.execute(f"SELECT * FROM segments WHERE id IN ({marks})", tuple(ids)).fetchall()
        return {r["id"]: _segment(r) for r in rows}

    def neighbours(self, segment: Segment) -> tuple[str, str]:
        """Text of the segments just before and after, for search-hit context."""
        with self._reading() as db:
            before = db.execute(
                "SELECT text FROM segments WHERE stream_id = ? AND segment_index < ?"
                " ORDER BY segment_index DESC LIMIT 1",
                (segment.stream_id, segment.segment_index),
            ).fetchone()
            after = db.execute(
                "SELECT text FROM segments WHERE stream_id = ? AND segment_index > ?"
                " ORDER BY segment_index LIMIT 1",
                (segment.stream_id, segment.segment_index),
            ).fetchone()
        return (before[0] if before else "", after[0] if after else "")

    def keyword_search(self, query: str, k: int, filters: Filters) -> list[tuple[int, float]]:
        """FTS5 BM25 over segment text. Any term may match (BM25 ranks segments holding more and
        rarer terms first); terms are quoted, so no FTS syntax from the query leaks in; a number
        matches in either spelling ("ten", "10": relevance.keyword_terms)."""
        terms = keyword_terms(query)
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms[:64])
        where, params = _filter_sql(filters)
        sql = (
            "SELECT g.id, bm25(segments_fts) AS score FROM segments_fts"
            " JOIN segments g ON g.id = segments_fts.rowid JOIN streams s ON s.id = g.stream_id"
            f" WHERE segments_fts MATCH ? {where} ORDER BY score LIMIT ?"
        )
        with self._reading() as db:
            rows = db.execute(sql, (match, *params, k)).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def ids_matching(self, filters: Filters) -> list[int]:
        where, params = _filter_sql(filters)
        with self._reading() as db:
            rows = db.execute(
                f"SELECT g.id FROM segments g JOIN streams s ON s.id = g.stream_id WHERE 1=1 {where}", params
            ).fetchall()
        return [int(r[0]) for r in rows]

    def iter_segments(self, after_id: int = 0, batch: int = 256) -> Iterator[list[tuple[int, str]]]:
        """(id, text) of every segment with id > ``after_id``, in batches, for (re)indexing."""
        last = after_id
        while True:
            with self._reading() as db:
                rows = db.execute(
                    "SELECT id, text FROM segments WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
                ).fetchall()
            if not rows:
                return
            yield [(int(r[0]), str(r[1])) for r in rows]
            last = int(rows[-1][0])

    def count_segments(self) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])

    def all_segment_ids(self) -> list[int]:
        with self._reading() as db:
            return [int(r[0]) for r in db.execute("SELECT id FROM segments ORDER BY id")]


def _filter_sql(filters: Filters) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters.tenant is not None:
        clauses.append("s.tenant = ?")
        params.append(filters.tenant)
    if filters.stream_id is not None:
        clauses.append("g.stream_id = ?")
        params.append(filters.stream_id)
    if filters.since is not None:
        clauses.append("g.created >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("g.created < ?")
        params.append(filters.until)
    if filters.speaker is not None:
        clauses.append("g.speaker = ?")
        params.append(filters.speaker)
    return "".join(f" AND {c}" for c in clauses), tuple(params)


def _segment(r: sqlite3.Row) -> Segment:
    words = [Word(**w) for w in json.loads(r["words"])]
    return Segment(
        r["id"],
        r["stream_id"],
        r["segment_index"],
        r["start"],
        r["end"],
        r["text"],
        words,
        r["language"],
        r["model"],
        r["created"],
        r["speaker"],
    )


def segment_row(stream_id: str, final: Final, model: str) -> tuple[Any, ...]:
    words = json.dumps([word_dict(w) for w in final.words])
    return (
        stream_id,
        final.segment_id,
        final.start,
        final.end,
        final.text,
        words,
        final.language,
        model,
        time.time(),
        final.speaker,
    )

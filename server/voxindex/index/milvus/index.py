"""The shared transcript index (``--store milvus://host:port/collection``): every replica's
segments, vectors and BM25 keyword index in one Milvus deployment, so search spans them all.

Writes: each replica keeps its own durable copy in local SQLite (``catalog``, with recordings)
and an outbox row per write in the same transaction; ``Outbox`` sends them to Milvus in order
and a stream's final is sent only once Milvus acknowledged it. Reads (search, streams,
transcripts) go to Milvus. Search asks Milvus's BM25 function on the text and its dense MiniLM
vectors, both filtered by tenant, stream and time, and ranks what they found by the same
relevance as the embedded store (index/relevance.py)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voxindex.engine.events import Final
from voxindex.engine.types import Word, word_dict
from voxindex.errors import StoreUnavailableError
from voxindex.index.base import IndexStats
from voxindex.index.embed import Embedder
from voxindex.index.milvus.collections import connect
from voxindex.index.milvus.expressions import (
    QUERY_LIMIT,
    SEGMENT_FIELDS,
    STATS_TTL_S,
    STREAM_FIELDS,
    MilvusUrl,
    expression,
    literal,
    segment_key,
)
from voxindex.index.outbox import Outbox
from voxindex.index.records import Filters, OutboxRow, Segment, StreamRecord
from voxindex.index.relevance import DEFAULT_MIN_SCORE, keyword_terms
from voxindex.index.search import CANDIDATES, Hit, Mode, rank
from voxindex.index.sqlite import STORE_FILE, Store

log = logging.getLogger("voxindex.index")


class MilvusIndex:
    def __init__(
        self,
        url: MilvusUrl,
        data_dir: Path,
        replica: str = "",
        limit: int = 100_000,
        timeout_s: float = 5.0,
        device: str = "cpu",
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.replica = replica
        self.timeout_s = timeout_s
        self.segments_collection = url.collection
        self.streams_collection = f"{url.collection}_streams"
        self.catalog = Store(data_dir / STORE_FILE, outbox=True)
        self.embedder = Embedder(device)
        self._embed_lock = threading.Lock()
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._stats: tuple[float, IndexStats] | None = None
        self.outbox = Outbox(self.catalog, self._send, limit)
        self.outbox.start()

    @classmethod
    def open(cls, url: str, data_dir: Path, replica: str = "", **options: Any) -> MilvusIndex:
        return cls(MilvusUrl.parse(url), data_dir, replica, **options)

    # ---------------- the connection ----------------
    @contextmanager
    def _milvus(self) -> Iterator[Any]:
        """The client, connected (and the collections made) on first use; any failure is
        StoreUnavailableError and the next use connects again."""
        try:
            with self._client_lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
            yield client
        except StoreUnavailableError:
            raise
        except Exception as e:
            if e.__class__.__module__.startswith(("pymilvus", "grpc")):
                with self._client_lock:
                    self._client = None
                raise StoreUnavailableError(f"Milvus at {self.url.uri}: {str(e)[:200]}") from e
            raise

    def _connect(self) -> Any:
        return connect(self.url, self.segments_collection, self.streams_collection, self.timeout_s)

    # ---------------- writes: local first, then the outbox ----------------
    def open_stream(self, stream_id: str, model: str, tenant: str) -> None:
        self.outbox.check_room()
        self.catalog.create_stream(stream_id, tenant, model)
        self.outbox.wrote(stream_id)

    def close_stream(self, stream_id: str, duration: float | None = None) -> None:
        self.catalog.close_stream(stream_id, duration)
        self.outbox.wrote(stream_id)

    def commit(self, stream_id: str, final: Final, model: str) -> int:
        self.outbox.check_room()
        segment_id = self.catalog.commit_segment(stream_id, final, model)
        self.outbox.wrote(stream_id)
        return segment_id

    def deliver(self, stream_id: str, send: Callable[[], None]) -> None:
        self.outbox.deliver(stream_id, send)

    def commit_window(self, recording_id: str, finals: list[Final], done_s: float, model: str) -> None:
        self.catalog.commit_window(recording_id, finals, done_s, model)
        self.outbox.wrote(recording_id)

    def finish_recording(self, recording_id: str, language: str | None) -> None:
        self.catalog.update_recording(recording_id, status="indexed", language=language)
        self.close_stream(recording_id)

    def fail_recording(self, recording_id: str, reason: str) -> None:
        self.catalog.update_recording(recording_id, status="failed", reason=reason)

    def reuse_transcript(self, source: str, target: str) -> None:
        self.catalog.copy_segments(source, target)
        self.outbox.wrote(target)

    def delete_stream(self, stream_id: str, tenant: str | None = None) -> bool:
        """Delete here and in Milvus (a stream from any replica); returns once Milvus has applied
        it, or after the store timeout with the deletion queued durably."""
        if self.catalog.delete_stream(stream_id, tenant) is None:
            if self.get_stream(stream_id, tenant) is None:
                return False
            self.catalog.outbox_delete(stream_id)  # another replica's stream
        self.outbox.wrote(stream_id)
        self.outbox.wait(stream_id, 2 * self.timeout_s)
        return True

    def _send(self, rows: list[OutboxRow]) -> None:
        """Apply outbox rows to Milvus, in order (runs on the outbox thread)."""
        i = 0
        while i < len(rows):
            row = rows[i]
            if row.kind == "segment":
                j = i
                while j < len(rows) and rows[j].kind == "segment":
                    j += 1
                self._upsert_segments([r.ref for r in rows[i:j] if r.ref is not None])
                i = j
                continue
            with self._milvus() as client:
                if row.kind == "stream":
                    record = self.catalog.get_stream(row.stream_id)
                    if record is not None:
                        client.upsert(self.streams_collection, [self._stream_entity(record)])
                elif row.kind == "delete":
                    where = f"stream_id == {literal(row.stream_id)}"
                    client.delete(self.segments_collection, filter=where)
                    client.delete(self.streams_collection, filter=where)
            i += 1

    def _upsert_segments(self, ids: list[int]) -> None:
        segments = self.catalog.get_segments(ids)
        if not segments:
            return  # deleted since
        ordered = [segments[i] for i in ids if i in segments]
        streams = {s.stream_id: self.catalog.get_stream(s.stream_id) for s in ordered}
        with self._embed_lock:
            vectors = self.embedder([s.text for s in ordered])
        entities = []
        for segment, vector in zip(ordered, vectors, strict=True):
            record = streams[segment.stream_id]
            if record is None:
                continue
            entities.append(
                {
                    "id": segment_key(segment.stream_id, segment.segment_index),
                    "stream_id": segment.stream_id,
                    "tenant": record.tenant,
                    "segment_index": segment.segment_index,
                    "start": segment.start,
                    "end": segment.end,
                    "text": segment.text[:8000],
                    "words": json.dumps([word_dict(w) for w in segment.words]),
                    "speaker": segment.speaker,
                    "language": segment.language or "",
                    "model": segment.model,
                    "created": segment.created,
                    "recording": record.metadata.get("kind") == "recording",
                    "replica": self.replica,
                    "vector": vector.tolist(),
                }
            )
        if entities:
            with self._milvus() as client:
                client.upsert(self.segments_collection, entities)

    def _stream_entity(self, record: StreamRecord) -> dict[str, Any]:
        return {
            "stream_id": record.id,
            "tenant": record.tenant,
            "model": record.model,
            "created": record.created,
            "closed": record.closed if record.closed is not None else -1.0,
            "metadata": json.dumps(record.metadata)[:4000],
            "replica": self.replica,
            "unused": [0.0, 0.0],
        }

    # ---------------- reads: from Milvus, every replica's streams ----------------
    def search(
        self, query: str, k: int, mode: Mode, filters: Filters, min_score: float = DEFAULT_MIN_SCORE
    ) -> list[Hit]:
        """As the embedded store searches (search.Searcher): candidates from Milvus's BM25
        (keyword), its COSINE index (vector) or both, ranked and cut by the same relevance."""
        where = expression(filters)
        with self._embed_lock:
            vector = self.embedder([query])[0].tolist()
        with self._milvus() as client:

            def nearest(data: Any, field: str, metric: str, limit: int, condition: str) -> list[Any]:
                found = client.search(
                    self.segments_collection,
                    data=[data],
                    anns_field=field,
                    limit=limit,
                    filter=condition,
                    output_fields=SEGMENT_FIELDS,
                    search_params={"metric_type": metric},
                )
                return list(found[0])

            found: dict[int, dict[str, Any]] = {}
            cosines: dict[int, float] = {}
            if mode != Mode.KEYWORD:
                for r in nearest(vector, "vector", "COSINE", CANDIDATES, where):
                    found[int(r["id"])], cosines[int(r["id"])] = r["entity"], float(r["distance"])
            if mode != Mode.VECTOR:
                words = " ".join(keyword_terms(query))  # numbers in both spellings
                for r in nearest(words, "sparse", "BM25", CANDIDATES, where) if words else []:
                    found.setdefault(int(r["id"]), r["entity"])
            missing = [i for i in found if i not in cosines]
            if missing:
                condition = f"{where} and id in [{', '.join(map(str, missing))}]"
                for r in nearest(vector, "vector", "COSINE", len(missing), condition):
                    cosines[int(r["id"])] = float(r["distance"])
            candidates = {i: (e["text"], cosines.get(i, 0.0)) for i, e in found.items()}
            ranked = rank(query, candidates, k, min_score)
            segments = [(self._segment(found[i], i), score, found[i]) for i, score in ranked]
            context = self._neighbours(client, [s for s, _, _ in segments])
        hits = []
        for segment, score, entity in segments:
            before, after = context.get((segment.stream_id, segment.segment_index), ("", ""))
            hits.append(Hit(segment, score, before, after, bool(entity.get("recording"))))
        return hits

    def _neighbours(self, client: Any, segments: list[Segment]) -> dict[tuple[str, int], tuple[str, str]]:
        if not segments:
            return {}
        wanted = " or ".join(
            f"(stream_id == {literal(s.stream_id)} and segment_index in "
            f"[{s.segment_index - 1}, {s.segment_index + 1}])"
            for s in segments
        )
        rows = client.query(
            self.segments_collection,
            filter=wanted,
            output_fields=["stream_id", "segment_index", "text"],
            limit=QUERY_LIMIT,
        )
        text = {(r["stream_id"], r["segment_index"]): r["text"] for r in rows}
        return {
            (s.stream_id, s.segment_index): (
                text.get((s.stream_id, s.segment_index - 1), ""),
                text.get((s.stream_id, s.segment_index + 1), ""),
            )
            for s in segments
        }

    def list_streams(self, tenant: str | None, limit: int = 100, offset: int = 0) -> list[StreamRecord]:
        where = f"tenant == {literal(tenant)}" if tenant is not None else 'stream_id != ""'
        with self._milvus() as client:
            rows = client.query(
                self.streams_collection, filter=where, output_fields=STREAM_FIELDS, limit=QUERY_LIMIT
            )
            rows = sorted(rows, key=lambda r: r["created"], reverse=True)[offset : offset + limit]
            counts = self._counts(client, [r["stream_id"] for r in rows])
        return [self._stream(r, counts.get(r["stream_id"], 0)) for r in rows]

    def get_stream(self, stream_id: str, tenant: str | None = None) -> StreamRecord | None:
        where = f"stream_id == {literal(stream_id)}"
        if tenant is not None:
            where += f" and tenant == {literal(tenant)}"
        with self._milvus() as client:
            rows = client.query(self.streams_collection, filter=where, output_fields=STREAM_FIELDS, limit=1)
            if not rows:
                return None
            counts = self._counts(client, [stream_id])
        return self._stream(rows[0], counts.get(stream_id, 0))

    def segments_of(self, stream_id: str) -> list[Segment]:
        with self._milvus() as client:
            rows = client.query(
                self.segments_collection,
                filter=f"stream_id == {literal(stream_id)}",
                output_fields=SEGMENT_FIELDS,
                limit=QUERY_LIMIT,
            )
        return sorted((self._segment(r, r["id"]) for r in rows), key=lambda s: s.segment_index)

    def _counts(self, client: Any, stream_ids: list[str]) -> dict[str, int]:
        if not stream_ids:
            return {}
        rows = client.query(
            self.segments_collection,
            filter=f"stream_id in {json.dumps(stream_ids)}",
            output_fields=["stream_id"],
            limit=QUERY_LIMIT,
        )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["stream_id"]] = counts.get(r["stream_id"], 0) + 1
        return counts

    @staticmethod
    def _segment(e: dict[str, Any], key: int) -> Segment:
        return Segment(
            int(key),
            e["stream_id"],
            int(e["segment_index"]),
            float(e["start"]),
            float(e["end"]),
            e["text"],
            [Word(**w) for w in json.loads(e["words"])],
            e["language"] or None,
            e["model"],
            float(e["created"]),
            None if e.get("speaker") is None else int(e["speaker"]),
        )

    @staticmethod
    def _stream(r: dict[str, Any], segments: int) -> StreamRecord:
        closed = float(r["closed"])
        return StreamRecord(
            r["stream_id"],
            r["tenant"],
            r["model"],
            float(r["created"]),
            closed if closed >= 0 else None,
            json.loads(r["metadata"] or "{}"),
            segments,
        )

    def stats(self) -> IndexStats:
        """Sizes from Milvus (cached a few seconds: scrapes and /health call this)."""
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > STATS_TTL_S:
            try:
                with self._milvus() as client:
                    n = int(client.get_collection_stats(self.segments_collection).get("row_count", 0))
            except StoreUnavailableError:
                n = -1
            self._stats = (now, IndexStats("milvus", n, n, self.outbox.pending, self.outbox.available))
        return self._stats[1]

    def close(self) -> None:
        self.outbox.stop()
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # closing a dead connection
                    log.debug("closing the Milvus client failed", exc_info=True)
                self._client = None
        self.catalog.close()

"""The store's streams: opened, closed, listed, deleted with their segments."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from voxindex.index.records import StreamRecord
from voxindex.index.sqlite.connection import Database


class StreamTable(Database):
    def create_stream(
        self, stream_id: str, tenant: str, model: str, metadata: dict[str, Any] | None = None
    ) -> None:
        with self._writing() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO streams(id, tenant, model, created, metadata) VALUES (?, ?, ?, ?, ?)",
                (stream_id, tenant, model, time.time(), json.dumps(metadata or {})),
            )
            if cur.rowcount:
                self._out("stream", stream_id)

    def close_stream(self, stream_id: str, duration: float | None = None) -> None:
        """Mark the stream ended; ``duration`` (seconds of audio) goes into its metadata."""
        with self._writing() as db:
            cur = db.execute(
                "UPDATE streams SET closed = ?, metadata = CASE WHEN ? IS NULL THEN metadata "
                "ELSE json_set(metadata, '$.duration', ?) END WHERE id = ? AND closed IS NULL",
                (time.time(), duration, duration, stream_id),
            )
            if cur.rowcount:
                self._out("stream", stream_id)

    def delete_stream(self, stream_id: str, tenant: str | None = None) -> list[int] | None:
        """Remove a stream and its segments; returns the removed segment ids, None if not found."""
        with self._lock:
            if self.get_stream(stream_id, tenant) is None:
                return None
            with self._writing() as db:
                ids = [r[0] for r in db.execute("SELECT id FROM segments WHERE stream_id = ?", (stream_id,))]
                db.execute("DELETE FROM segments WHERE stream_id = ?", (stream_id,))
                db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
                self._out("delete", stream_id)
            return ids

    def get_stream(self, stream_id: str, tenant: str | None = None) -> StreamRecord | None:
        rows = self._streams(
            "WHERE s.id = ?" + (" AND s.tenant = ?" if tenant else ""),
            (stream_id, tenant) if tenant else (stream_id,),
        )
        return rows[0] if rows else None

    def list_streams(
        self, tenant: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[StreamRecord]:
        where = "WHERE s.tenant = ?" if tenant else ""
        params: tuple[Any, ...] = (tenant,) if tenant else ()
        return self._streams(f"{where} ORDER BY s.created DESC LIMIT ? OFFSET ?", (*params, limit, offset))

    def _streams(self, tail: str, params: Sequence[Any]) -> list[StreamRecord]:
        sql = (
            "SELECT s.*, (SELECT COUNT(*) FROM segments g WHERE g.stream_id = s.id) AS n FROM streams s "
            + tail
        )
        with self._reading() as db:
            rows = db.execute(sql, tuple(params)).fetchall()
        return [
            StreamRecord(
                r["id"], r["tenant"], r["model"], r["created"], r["closed"], json.loads(r["metadata"]), r["n"]
            )
            for r in rows
        ]

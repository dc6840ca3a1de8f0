"""The store's recordings: their status, their windows committed in order, identical files found."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from voxindex.engine.events import Final
from voxindex.index.records import RecordingRecord
from voxindex.index.sqlite.connection import Database
from voxindex.index.sqlite.segments import INSERT_SEGMENT, segment_row


class RecordingTable(Database):
    def create_recording(
        self,
        recording_id: str,
        tenant: str,
        filename: str,
        sha256: str,
        media: str,
        model: str,
        task: str = "transcribe",
    ) -> None:
        """A recording is a stream (its segments, search and export work the same) plus its status."""
        now = time.time()
        with self._writing() as db:
            db.execute(
                "INSERT INTO streams(id, tenant, model, created, metadata) VALUES (?, ?, ?, ?, ?)",
                (recording_id, tenant, model, now, json.dumps({"kind": "recording", "filename": filename})),
            )
            self._out("stream", recording_id)
            db.execute(
                "INSERT INTO recordings(id, tenant, filename, sha256, media, status, model, created, updated,"
                " task) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                (recording_id, tenant, filename, sha256, media, model, now, now, task),
            )

    def update_recording(self, recording_id: str, **fields: Any) -> None:
        allowed = {"status", "reason", "duration", "language", "reused_from"}
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._writing() as db:
            db.execute(
                f"UPDATE recordings SET {sets}, updated = ? WHERE id = ?",
                (*fields.values(), time.time(), recording_id),
            )

    def commit_window(
        self, recording_id: str, finals: Sequence[Final], done_s: float, model: str
    ) -> list[int]:
        """A window's segments and the progress they make, in one transaction: a restart resumes
        exactly after the last committed window, never repeating a segment."""
        ids = []
        with self._writing() as db:
            for final in finals:
                cur = db.execute(INSERT_SEGMENT, segment_row(recording_id, final, model))
                ids.append(int(cur.lastrowid or 0))
                self._out("segment", recording_id, ids[-1])
            db.execute(
                "UPDATE recordings SET done_s = MAX(done_s, ?), status = 'transcribing', updated = ?"
                " WHERE id = ?",
                (done_s, time.time(), recording_id),
            )
        return ids

    def get_recording(self, recording_id: str, tenant: str | None = None) -> RecordingRecord | None:
        rows = self._recordings(
            "WHERE r.id = ?" + (" AND r.tenant = ?" if tenant else ""),
            (recording_id, tenant) if tenant else (recording_id,),
        )
        return rows[0] if rows else None

    def list_recordings(
        self, tenant: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RecordingRecord]:
        where = "WHERE r.tenant = ?" if tenant else ""
        params: tuple[Any, ...] = (tenant,) if tenant else ()
        return self._recordings(f"{where} ORDER BY r.created DESC LIMIT ? OFFSET ?", (*params, limit, offset))

    def indexed_recording(self, sha256: str, task: str = "transcribe") -> RecordingRecord | None:
        """A finished transcript (or translation) of the same content, if there is one."""
        rows = self._recordings(
            "WHERE r.sha256 = ? AND r.task = ? AND r.status = 'indexed' AND r.reused_from IS NULL"
            " ORDER BY r.created LIMIT 1",
            (sha256, task),
        )
        return rows[0] if rows else None

    def recording_ids(self, stream_ids: set[str]) -> set[str]:
        """Which of these streams are recordings."""
        if not stream_ids:
            return set()
        marks = ",".join("?" * len(stream_ids))
        with self._reading() as db:
            rows = db.execute(f"SELECT id FROM recordings WHERE id IN ({marks})", tuple(stream_ids))
            return {str(r[0]) for r in rows}

    def unfinished_recordings(self) -> list[RecordingRecord]:
        return self._recordings("WHERE r.status IN ('queued', 'transcribing') ORDER BY r.created", ())

    def _recordings(self, tail: str, params: Sequence[Any]) -> list[RecordingRecord]:
        sql = (
            "SELECT r.*, (SELECT COUNT(*) FROM segments g WHERE g.stream_id = r.id) AS n FROM recordings r "
            + tail
        )
        with self._reading() as db:
            rows = db.execute(sql, tuple(params)).fetchall()
        return [
            RecordingRecord(
                r["id"],
                r["tenant"],
                r["filename"],
                r["sha256"],
                r["media"],
                r["status"],
                r["reason"],
                r["duration"],
                r["done_s"],
                r["language"],
                r["model"],
                r["reused_from"],
                r["created"],
                r["updated"],
                r["n"],
                r["task"],
            )
            for r in rows
        ]

"""The transcript store: SQLite in WAL mode, the source of truth for streams and final segments.

A final segment is committed (fsync'd) here before its `final` message is sent. Keyword search
is SQLite FTS5 over the same rows, kept in step by triggers. Vector indexes are derived from
this store and can always be rebuilt from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voxindex.engine.align import Word, word_dict
from voxindex.engine.events import Final
from voxindex.errors import StoreCorruptError, StoreUnavailableError

log = logging.getLogger("voxindex.index")

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    closed REAL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    segment_index INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    text TEXT NOT NULL,
    words TEXT NOT NULL,
    language TEXT,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    speaker INTEGER  -- a diarized segment's dominant speaker label
);
CREATE INDEX IF NOT EXISTS segments_by_stream ON segments(stream_id, segment_index);
CREATE INDEX IF NOT EXISTS segments_by_created ON segments(created);
CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5(
    text, content='segments', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS segments_ai AFTER INSERT ON segments BEGIN
    INSERT INTO segments_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS segments_ad AFTER DELETE ON segments BEGIN
    INSERT INTO segments_fts(segments_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY REFERENCES streams(id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    media TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    duration REAL,
    done_s REAL NOT NULL DEFAULT 0,
    language TEXT,
    model TEXT NOT NULL,
    reused_from TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    task TEXT NOT NULL DEFAULT 'transcribe'
);
CREATE INDEX IF NOT EXISTS recordings_by_sha ON recordings(sha256, status);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,  -- stream (upsert the stream's row) | segment | delete (the stream)
    stream_id TEXT NOT NULL,
    ref INTEGER  -- segment: its id here
);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL NOT NULL);  -- readiness writes
"""
SQLITE_MAGIC = b"SQLite format 3\x00"
STORE_FILE = "transcripts.sqlite3"  # in the data directory


# Function words that would make any-term keyword search match nearly every segment.
STOPWORDS = frozenset(
    """a an and are as at be but by do does did for from had has have he her his how i if in into is it
    its me my no not of on or our she so than that the their them then there these they this to too us
    was we were what when where which who why will with would you your""".split()
)


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


class Store:
    """``outbox=True`` (a replica of a shared store): every write also records, in the same
    transaction, what a remote store must be told (index/outbox.py sends it in order).

    Every failure of the database (disk full, read-only, I/O error, damage) is raised as
    ``StoreUnavailableError`` with the path, after the write's transaction is rolled back, and
    remembered in ``fault`` ("full", "unwritable", "corrupt") until a write succeeds again
    (damage is remembered until restart). Opening refuses a damaged or unreadable file with
    ``StoreCorruptError``; a missing file is created whole or not at all, so an existing
    store is never replaced by an empty one.
    """

    def __init__(self, path: Path, outbox: bool = False) -> None:
        self.outbox = outbox
        self.path = path
        self.fault: str | None = None
        self._lock = threading.RLock()
        if not path.exists():
            _create(path)
        self._db = _open(path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as e:
                raise self._failed(e) from e

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed whole, or rolled back and raised as StoreUnavailableError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as e:
                if self._db.in_transaction:  # SQLite rolls some failures back itself, not all
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise self._failed(e) from e
                raise
            if self.fault != "corrupt":
                self.fault = None

    def _failed(self, e: sqlite3.Error) -> StoreUnavailableError:
        kind = fault_kind(e)
        if self.fault != "corrupt":
            self.fault = kind
        what = {"full": "is full", "corrupt": "is damaged", "unwritable": "cannot be written"}[kind]
        return StoreUnavailableError(f"the transcript store {self.path} {what}: {e}")

    def probe(self) -> None:
        """A real write (one tiny row, committed): raises StoreUnavailableError if it fails."""
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO probe(id, at) VALUES (1, ?)", (time.time(),))

    # ---------------- writes ----------------
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

    def _out(self, kind: str, stream_id: str, ref: int | None = None) -> None:
        """Inside a write's transaction: what a shared store must be told (outbox mode)."""
        if self.outbox:
            self._db.execute(
                "INSERT INTO outbox(kind, stream_id, ref) VALUES (?, ?, ?)", (kind, stream_id, ref)
            )

    def commit_segment(self, stream_id: str, final: Final, model: str) -> int:
        """Durably store one final segment; returns its id."""
        with self._writing() as db:
            cur = db.execute(INSERT_SEGMENT, _segment_row(stream_id, final, model))
            segment_id = int(cur.lastrowid or 0)
            self._out("segment", stream_id, segment_id)
        return segment_id

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

    # ---------------- recordings ----------------
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
                cur = db.execute(INSERT_SEGMENT, _segment_row(recording_id, final, model))
                ids.append(int(cur.lastrowid or 0))
                self._out("segment", recording_id, ids[-1])
            db.execute(
                "UPDATE recordings SET done_s = MAX(done_s, ?), status = 'transcribing', updated = ?"
                " WHERE id = ?",
                (done_s, time.time(), recording_id),
            )
        return ids

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

    # ---------------- reads ----------------
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
        rarer terms first); terms are quoted, so no FTS syntax from the query leaks in."""
        terms = [t for t in "".join(c if c.isalnum() else " " for c in query).split() if t]
        terms = [t for t in terms if t.lower() not in STOPWORDS] or terms  # "for", "the" match everything
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

    # ---------------- the outbox (to a shared store) ----------------
    def outbox_take(self, n: int) -> list[OutboxRow]:
        with self._reading() as db:
            rows = db.execute("SELECT * FROM outbox ORDER BY seq LIMIT ?", (n,)).fetchall()
        return [OutboxRow(r["seq"], r["kind"], r["stream_id"], r["ref"]) for r in rows]

    def outbox_ack(self, upto: int) -> None:
        with self._writing() as db:
            db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))

    def outbox_delete(self, stream_id: str) -> None:
        """Tell the shared store to delete a stream this replica has no rows of."""
        with self._writing():
            self._out("delete", stream_id)

    def outbox_count(self) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_last(self) -> int:
        """The newest outbox sequence number ever assigned (0 before the first)."""
        with self._reading() as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

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


INSERT_SEGMENT = (
    "INSERT INTO segments(stream_id, segment_index, start, end, text, words, language, model, created,"
    " speaker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _segment_row(stream_id: str, final: Final, model: str) -> tuple[Any, ...]:
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


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since a store was created (``CREATE TABLE IF NOT EXISTS`` adds none)."""
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(segments)")}
    if "speaker" not in columns:
        db.execute("ALTER TABLE segments ADD COLUMN speaker INTEGER")
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(recordings)")}
    if "task" not in columns:
        db.execute("ALTER TABLE recordings ADD COLUMN task TEXT NOT NULL DEFAULT 'transcribe'")


# ---------------- opening: a damaged store is refused, a missing one created whole ----------------
def fault_kind(e: sqlite3.Error) -> str:
    """What a database failure means for the server: "full", "corrupt" or "unwritable"."""
    code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF  # the primary result code
    if code == sqlite3.SQLITE_FULL:
        return "full"
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return "corrupt"
    return "unwritable"  # read-only, I/O error, cannot open, locked, a failing trigger


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a committed final survives power loss too
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _create(path: Path) -> None:
    """A new store, built beside its final name and renamed into place once complete: a file at
    ``path`` is therefore always a whole store, and an empty or short one is damage."""
    building = path.with_name(path.name + ".new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (building, building.with_name(building.name + "-wal")):
            leftover.unlink(missing_ok=True)
        db = _connect(building)
        db.executescript(SCHEMA)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        building.replace(path)
    except (OSError, sqlite3.Error) as e:
        raise StoreUnavailableError(f"cannot create the transcript store {path}: {e}") from e


def _open(path: Path) -> sqlite3.Connection:
    """Open an existing store after checking it is one, whole: StoreCorruptError if it is not,
    StoreUnavailableError if it cannot be opened (a read-only or failing filesystem)."""
    _check_file(path)
    identity = _identity(path)
    try:
        db = _connect(path)
        if identity not in _CHECKED:  # `serve` checks before it listens; start-up opens again
            problems = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                db.close()
                raise StoreCorruptError(_damaged(path, "; ".join(problems)[:300]))
            _CHECKED.add(identity)
        db.executescript(SCHEMA)  # tables added since the store was created
        _migrate(db)
    except sqlite3.Error as e:
        if fault_kind(e) == "corrupt":
            raise StoreCorruptError(_damaged(path, str(e))) from e
        raise StoreUnavailableError(f"cannot open the transcript store {path}: {e}") from e
    return db


# files whose whole-file check passed in this process, as (path, inode, size, mtime): the check
# reads the whole store, so a second open of the unchanged file does not repeat it
_CHECKED: set[tuple[str, int, int, int]] = set()


def _identity(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns


def _check_file(path: Path) -> None:
    """The header and length of the file: catches a truncated copy or another file in its
    place before SQLite would treat a damaged store as a new, empty one."""
    try:
        with path.open("rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except OSError as e:
        raise StoreCorruptError(f"cannot read the transcript store {path}: {e.strerror or e}") from e
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        what = "is empty" if size == 0 else "is not a SQLite database"
        raise StoreCorruptError(_damaged(path, f"the file {what} ({size} bytes)"))
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    change_counter = int.from_bytes(header[24:28], "big")
    wal = path.with_name(path.name + "-wal")
    if pages and valid_for == change_counter and size < pages * page_size and not wal.exists():
        raise StoreCorruptError(
            _damaged(path, f"the file is truncated ({size} of {pages * page_size} bytes)")
        )


def _damaged(path: Path, detail: str) -> str:
    return (
        f"the transcript store {path} is damaged ({detail}); voxindex will not start over it. "
        "Restore it from a backup, or move it aside to start with an empty store"
    )

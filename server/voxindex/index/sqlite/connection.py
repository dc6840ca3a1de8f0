"""The store's SQLite file: created whole, checked and migrated when opened, and one connection
whose writes are single transactions, each failure remembered as the store's fault."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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
_CHECKED: set[tuple[str, int, int, int]] = set()  # files checked whole in this process


class Database:
    """The connection the store's tables share (``Store``'s base)."""

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

    def _out(self, kind: str, stream_id: str, ref: int | None = None) -> None:
        """Inside a write's transaction: what a shared store must be told (outbox mode)."""
        if self.outbox:
            self._db.execute(
                "INSERT INTO outbox(kind, stream_id, ref) VALUES (?, ?, ?)", (kind, stream_id, ref)
            )


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since a store was created (``CREATE TABLE IF NOT EXISTS`` adds none)."""
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(segments)")}
    if "speaker" not in columns:
        db.execute("ALTER TABLE segments ADD COLUMN speaker INTEGER")
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(recordings)")}
    if "task" not in columns:
        db.execute("ALTER TABLE recordings ADD COLUMN task TEXT NOT NULL DEFAULT 'transcribe'")


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

"""The transcript store: SQLite in WAL mode, the source of truth for streams and final segments.

A final segment is committed (fsync'd) here before its `final` message is sent. Keyword search
is SQLite FTS5 over the same rows, kept in step by triggers. Vector indexes are derived from
this store and can always be rebuilt from it."""

from __future__ import annotations

from voxindex.index.sqlite.outbox import OutboxTable
from voxindex.index.sqlite.recordings import RecordingTable
from voxindex.index.sqlite.segments import SegmentTable
from voxindex.index.sqlite.streams import StreamTable


class Store(StreamTable, SegmentTable, RecordingTable, OutboxTable):
    """``outbox=True`` (a replica of a shared store): every write also records, in the same
    transaction, what a remote store must be told (index/outbox.py sends it in order).

    Every failure of the database (disk full, read-only, I/O error, damage) is raised as
    ``StoreUnavailableError`` with the path, after the write's transaction is rolled back, and
    remembered in ``fault`` ("full", "unwritable", "corrupt") until a write succeeds again
    (damage is remembered until restart). Opening refuses a damaged or unreadable file with
    ``StoreCorruptError``; a missing file is created whole or not at all, so an existing
    store is never replaced by an empty one.
    """

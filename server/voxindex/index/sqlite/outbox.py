"""The outbox of a replica of a shared store: what the shared store must still be told, in order."""

from __future__ import annotations

from voxindex.index.records import OutboxRow
from voxindex.index.sqlite.connection import Database


class OutboxTable(Database):
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

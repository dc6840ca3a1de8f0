"""Delivery to a shared store (Milvus), in order, surviving its outages and our restarts.

Every write a replica makes lands first in its local SQLite store, together with an outbox row
in the same transaction (``Store(outbox=True)``): nothing is lost if the process dies. One
thread sends the outbox to the shared store in order, retrying with backoff while the store is
unreachable. A stream's events wait (``deliver``) until everything it committed before them is
acknowledged by the shared store: a client never receives a final the shared store has not
got. The outbox is bounded: past ``limit`` rows, new finals are refused with
``store_unavailable`` rather than filling the disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from voxindex.errors import StoreUnavailableError
from voxindex.index.records import OutboxRow
from voxindex.index.sqlite import Store

log = logging.getLogger("voxindex.index")

BATCH = 128  # outbox rows per write to the shared store
BACKOFF_S = (0.1, 5.0)  # first and longest wait between retries


class Outbox:
    def __init__(self, store: Store, send: Callable[[list[OutboxRow]], None], limit: int = 100_000) -> None:
        self.store = store
        self.send = send
        self.limit = limit
        self.errors = 0  # failed attempts to write to the shared store, ever
        self.available = True  # the latest attempt succeeded
        self._pending = store.outbox_count()
        # everything up to here is acknowledged: rows left over from a previous run are not
        first = store.outbox_take(1)
        self._acked = first[0].seq - 1 if first else store.outbox_last()
        self._last: dict[str, int] = {}  # stream → its newest outbox row
        self._waiting: dict[str, deque[tuple[int, Callable[[], None]]]] = {}
        self._lock = threading.Lock()  # callbacks run under it: a stream's events stay in order
        self._wake = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._backoff = BACKOFF_S[0]  # the next wait after a failed send

    # ---------------- writers' side ----------------
    def check_room(self) -> None:
        if self._pending >= self.limit:
            raise StoreUnavailableError(
                f"the shared store has been unreachable for too long ({self._pending} writes waiting); "
                "this final could not be stored"
            )

    def wrote(self, stream_id: str) -> None:
        """``stream_id`` just committed (its outbox row is written): send soon."""
        last = self.store.outbox_last()
        with self._lock:
            self._last[stream_id] = last
            self._pending += 1
        with self._wake:
            self._wake.notify()

    def deliver(self, stream_id: str, send: Callable[[], None]) -> None:
        """Run ``send`` once everything ``stream_id`` committed so far is acknowledged."""
        with self._lock:
            queue = self._waiting.get(stream_id)
            if not queue and self._last.get(stream_id, 0) <= self._acked:
                send()
                return
            if queue is None:
                queue = self._waiting[stream_id] = deque()
            queue.append((self._last.get(stream_id, 0), send))

    def wait(self, stream_id: str, timeout: float) -> bool:
        """Block until what ``stream_id`` committed so far is acknowledged; False on timeout."""
        done = threading.Event()
        self.deliver(stream_id, done.set)
        return done.wait(timeout)

    @property
    def pending(self) -> int:
        return self._pending

    # ---------------- the sending thread ----------------
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="voxindex-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after a last attempt to send what is waiting (the rest stays for next time)."""
        deadline = time.monotonic() + timeout
        while self._pending and self.available and time.monotonic() < deadline:
            time.sleep(0.05)
        self._running = False
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        while self._running:
            try:
                self._turn()
            except StoreUnavailableError as e:  # the local journal itself failed (disk full, I/O)
                log.warning("the outbox's local journal failed: %s; retrying", e.message)
                with self._wake:
                    self._wake.wait(timeout=BACKOFF_S[1])

    def _turn(self) -> None:
        """Send the next batch in order, or wait: for work, or out a failure (backing off)."""
        rows = self.store.outbox_take(BATCH)
        if not rows:
            with self._wake:
                self._wake.wait(timeout=0.5)
            return
        try:
            self.send(rows)
        except Exception as e:
            self.errors += 1
            if self.available:
                log.warning(
                    "shared store unreachable (%s: %s); %d writes wait in the local outbox, finals are "
                    "held until it is back",
                    e.__class__.__name__,
                    str(e)[:200],
                    self._pending,
                )
            self.available = False
            with self._wake:
                self._wake.wait(timeout=self._backoff)
            self._backoff = min(BACKOFF_S[1], self._backoff * 2)
            return
        if not self.available:
            log.warning("shared store reachable again; sending %d waiting writes", self._pending)
        self.available, self._backoff = True, BACKOFF_S[0]
        self.store.outbox_ack(rows[-1].seq)  # may fail: the rows are sent again (idempotent)
        self._acknowledge(rows[-1].seq, self.store.outbox_count())

    def _acknowledge(self, seq: int, pending: int) -> None:
        with self._lock:
            self._acked = seq
            self._pending = pending
            for stream_id in list(self._waiting):
                queue = self._waiting[stream_id]
                while queue and queue[0][0] <= seq:
                    queue.popleft()[1]()
                if not queue:
                    del self._waiting[stream_id]
            for stream_id in [s for s, last in self._last.items() if last <= seq]:
                del self._last[stream_id]

"""Keeps the vector index in step with the store, on its own thread.

The engine commits a final to the store and hands its id here; this thread embeds every id
waiting (one batch) and adds them to FAISS, so the transcription loop never waits for an
embedding. At start-up it loads the saved index and embeds whatever the store holds beyond
it; a missing, corrupt or inconsistent index file is rebuilt from the store with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from voxindex.index.embed import Embedder
from voxindex.index.sqlite import Store
from voxindex.index.vectors import VectorIndex

log = logging.getLogger("voxindex.index")

SAVE_EVERY_S = 5.0


class Indexer:
    def __init__(
        self, store: Store, embedder: Embedder, path: Path, ivf_threshold: int = 200_000, gpu: bool = False
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.path = path
        self.gpu = gpu
        self.vectors = self._open(ivf_threshold)
        self._pending: list[int] = []
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._saved_at = time.monotonic()
        self.save_failing = False  # the last save failed (logged once per failing spell)
        self.indexed: dict[int, float] = {}  # segment id → when it became searchable (monotonic)

    def _open(self, ivf_threshold: int) -> VectorIndex:
        try:
            vectors = VectorIndex.load(self.path, ivf_threshold, self.gpu)
        except ValueError as e:
            if self.path.exists() or self.store.count_segments():
                log.warning("vector index %s; rebuilding it from the store", e)
            vectors = VectorIndex(ivf_threshold, self.gpu)
            self._catch_up(vectors, 0)
            return vectors
        held = vectors.ids()
        stored = set(self.store.all_segment_ids())
        if not held <= stored or not {i for i in stored if i <= vectors.last_id} <= held:
            log.warning("vector index disagrees with the store; rebuilding it from the store")
            vectors = VectorIndex(ivf_threshold, self.gpu)
            self._catch_up(vectors, 0)
        else:
            self._catch_up(vectors, vectors.last_id)
        return vectors

    def _catch_up(self, vectors: VectorIndex, after_id: int) -> None:
        for batch in self.store.iter_segments(after_id):
            vectors.add([i for i, _ in batch], self.embedder([t for _, t in batch]))

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="voxindex-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._flush_pending()
        self.save()

    def pending(self) -> int:
        """Segments stored but not yet embedded and searchable by vector."""
        with self._cond:
            return len(self._pending)

    def submit(self, segment_id: int) -> None:
        with self._cond:
            self._pending.append(segment_id)
            self._cond.notify()

    def remove(self, ids: list[int]) -> None:
        with self._cond:
            self._pending = [i for i in self._pending if i not in set(ids)]
        self.vectors.remove(ids)
        self.save()

    def save(self) -> None:
        try:
            self.vectors.save(self.path)
        except (OSError, RuntimeError) as e:  # the store has every segment: nothing is lost
            if not self.save_failing:
                log.warning(
                    "could not save the vector index %s (%s); it is rebuilt at start if need be", self.path, e
                )
            self.save_failing = True
            self._saved_at = time.monotonic()  # try again after SAVE_EVERY_S, not at once
            return
        if self.save_failing:
            log.warning("vector index %s saved again", self.path)
        self.save_failing = False
        self._dirty = False
        self._saved_at = time.monotonic()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._pending and self._running:
                    self._cond.wait(timeout=SAVE_EVERY_S)
                if not self._running:
                    return
            try:
                self._flush_pending()
                if self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                    self.save()
            except Exception:  # a bad batch must not stop indexing; the store still has it
                log.exception("indexing failed")

    def _flush_pending(self) -> None:
        with self._cond:
            ids, self._pending = self._pending, []
        if not ids:
            return
        found = self.store.get_segments(ids)  # a stream deleted meanwhile has nothing to index
        present = [i for i in ids if i in found]
        self.vectors.add(present, self.embedder([found[i].text for i in present]))
        now = time.monotonic()
        for i in present:
            self.indexed[i] = now
        if len(self.indexed) > 10_000:
            self.indexed.clear()
        self._dirty = True

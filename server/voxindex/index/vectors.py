"""The FAISS vector index over segment embeddings: ids are segment ids, scores are cosine.

Exact (flat inner product) while small; past ``ivf_threshold`` vectors it is rebuilt as an
IVF index (trained on what it holds) searched over half its lists, which keeps recall@10
above 0.95 against flat (BENCHMARKS.md). Persisted to one file plus the id of the last
segment it holds, so a restart only embeds what came after.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from voxindex.index.embed import DIMENSION

log = logging.getLogger("voxindex.index")
# faiss's SWIG-generated stubs misdescribe its API (keyword search parameters, downcast types)
faiss: Any = _faiss

# Lists an IVF search visits: half of them (all of a small index). On near-uniform synthetic
# vectors, the hardest case, that keeps recall@10 ≥ 0.95 against flat (BENCHMARKS.md).
IVF_MIN_NPROBE = 64


class VectorIndex:
    def __init__(self, ivf_threshold: int = 200_000) -> None:
        self.ivf_threshold = ivf_threshold
        self._lock = threading.Lock()
        self._index: Any = self._flat()
        self.last_id = 0  # highest segment id ever added (the store's ids only grow)

    @staticmethod
    def _flat() -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(DIMENSION))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        return "ivf" if self._is_ivf() else "flat"

    def _is_ivf(self) -> bool:
        return isinstance(faiss.downcast_index(self._index), faiss.IndexIVF)

    def add(self, ids: Sequence[int], vectors: npt.NDArray[np.float32]) -> None:
        if not len(ids):
            return
        with self._lock:
            self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
            self.last_id = max(self.last_id, max(ids))
            if not self._is_ivf() and self.size > self.ivf_threshold:
                self._index = self._to_ivf(self._index)

    def remove(self, ids: Sequence[int]) -> None:
        if ids:
            with self._lock:
                self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(
        self, query: npt.NDArray[np.float32], k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (segment id, cosine) for one query vector, optionally among ``allowed`` ids."""
        with self._lock:
            if self.size == 0 or (allowed is not None and not allowed):
                return []
            params = None
            if allowed is not None:
                selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
                params = (
                    faiss.SearchParametersIVF(sel=selector, nprobe=self._nprobe())
                    if self._is_ivf()
                    else faiss.SearchParameters(sel=selector)
                )
            elif self._is_ivf():
                params = faiss.SearchParametersIVF(nprobe=self._nprobe())
            scores, ids = self._index.search(query.reshape(1, -1), k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def _nprobe(self) -> int:
        nlist = int(faiss.downcast_index(self._index).nlist)
        return nlist if nlist <= 2 * IVF_MIN_NPROBE else nlist // 2

    def _to_ivf(self, flat: Any) -> Any:
        n = flat.ntotal
        base = faiss.downcast_index(flat.index)
        vectors = base.reconstruct_n(0, n)
        ids = faiss.vector_to_array(flat.id_map).astype(np.int64)
        nlist = max(1, min(int(math.sqrt(n)), n // 39))  # faiss wants ≥ 39 training points a list
        quantizer = faiss.IndexFlatIP(DIMENSION)
        ivf = faiss.IndexIVFFlat(quantizer, DIMENSION, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.add_with_ids(vectors, ids)
        log.info("vector index: %d vectors, now IVF with %d lists", n, nlist)
        return ivf

    # ---------------- persistence ----------------
    def save(self, path: Path) -> None:
        with self._lock:
            tmp = path.with_suffix(".tmp")
            faiss.write_index(self._index, str(tmp))
            tmp.replace(path)
            meta = path.with_suffix(".json")
            meta.with_suffix(".json.tmp").write_text(json.dumps({"last_id": self.last_id, "size": self.size}))
            meta.with_suffix(".json.tmp").replace(meta)

    @classmethod
    def load(cls, path: Path, ivf_threshold: int = 200_000) -> VectorIndex:
        """Load a saved index; raises ValueError if it is missing or unreadable."""
        index = cls(ivf_threshold)
        meta = path.with_suffix(".json")
        if not path.is_file() or not meta.is_file():
            raise ValueError(f"{path.name} or its metadata is missing")
        try:
            index._index = faiss.read_index(str(path))
            info = json.loads(meta.read_text())
            index.last_id = int(info["last_id"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path.name} is unreadable: {e}") from e
        if index._index.d != DIMENSION or index.size != int(info.get("size", -1)):
            raise ValueError(f"{path.name} does not match its metadata")
        return index

    def ids(self) -> set[int]:
        with self._lock:
            inner = faiss.downcast_index(self._index)
            if isinstance(inner, (faiss.IndexIDMap2, faiss.IndexIDMap)):
                return set(faiss.vector_to_array(inner.id_map).tolist())
            invlists = inner.invlists
            out: set[int] = set()
            for lst in range(inner.nlist):
                n = invlists.list_size(lst)
                if n:
                    out.update(faiss.rev_swig_ptr(invlists.get_ids(lst), n).tolist())
            return out

"""The FAISS vector index over segment embeddings: ids are segment ids, scores are cosine.

Exact (flat inner product) while small; past ``ivf_threshold`` vectors it is rebuilt as an
IVF index (trained on what it holds) searched over half its lists, which keeps recall@10
above 0.95 against flat (BENCHMARKS.md). Persisted to one file plus the id of the last
segment it holds, so a restart only embeds what came after.

With ``gpu=True`` (the server runs on CUDA and faiss has GPU support: the ``faiss-gpu-cu12``
package) searches run on a GPU copy of the index, kept in step with every add and removal;
the CPU index stays the one that is saved and rebuilt. FAISS's GPU indexes take no id
filter, so a filtered search (a tenant's or a stream's segments) fetches more hits and keeps
the allowed ones, and asks the CPU index with the filter only when too few survive. Where
faiss has no GPU support the index stays on the CPU and says why in the log.
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
GPU_OVERFETCH = 16  # a filtered GPU search fetches this many times k before filtering
GPU_MAX_K = 2048  # the most hits one FAISS GPU search returns


def gpu_unavailable() -> str | None:
    """Why FAISS cannot search on a GPU here, or None when it can."""
    if not hasattr(faiss, "StandardGpuResources"):
        return "this faiss build has no GPU support (install faiss-gpu-cu12 in place of faiss-cpu)"
    if faiss.get_num_gpus() < 1:
        return "faiss sees no GPU"
    return None


class VectorIndex:
    def __init__(self, ivf_threshold: int = 200_000, gpu: bool = False) -> None:
        self.ivf_threshold = ivf_threshold
        self._lock = threading.Lock()
        self._index: Any = self._flat()
        self.last_id = 0  # highest segment id ever added (the store's ids only grow)
        self._gpu_resources: Any = None
        self._gpu: Any = None  # the GPU copy searches run on
        if gpu:
            reason = gpu_unavailable()
            if reason is None:
                self._gpu_resources = faiss.StandardGpuResources()
            else:
                log.warning("vector search stays on the CPU: %s", reason)

    @property
    def device(self) -> str:
        return "cuda" if self._gpu_resources is not None else "cpu"

    def _mirror(self) -> None:
        """Copy the index to the GPU (after a rebuild, a load or a removal)."""
        if self._gpu_resources is not None:
            self._gpu = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index) if self.size else None

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
            keys = np.asarray(ids, dtype=np.int64)
            self._index.add_with_ids(vectors, keys)
            self.last_id = max(self.last_id, max(ids))
            if not self._is_ivf() and self.size > self.ivf_threshold:
                self._index = self._to_ivf(self._index)
                self._mirror()
            elif self._gpu is not None:
                self._gpu.add_with_ids(vectors, keys)
            else:
                self._mirror()

    def remove(self, ids: Sequence[int]) -> None:
        if ids:
            with self._lock:
                self._index.remove_ids(np.asarray(ids, dtype=np.int64))
                self._mirror()  # GPU indexes cannot remove ids

    def search(
        self, query: npt.NDArray[np.float32], k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (segment id, cosine) for one query vector, optionally among ``allowed`` ids."""
        with self._lock:
            if self.size == 0 or (allowed is not None and not allowed):
                return []
            if self._gpu is not None:
                hits = self._search_gpu(query, k, allowed)
                if hits is not None:
                    return hits
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

    def cosines(self, query: npt.NDArray[np.float32], ids: Sequence[int]) -> dict[int, float]:
        """The cosine of ``query`` with each of ``ids`` the index holds (a keyword hit's meaning,
        without searching): its stored vector, read back by id."""
        out: dict[int, float] = {}
        with self._lock:
            for i in ids:
                try:
                    vector = self._index.reconstruct(int(i))
                except RuntimeError:  # not held (not embedded yet)
                    continue
                out[int(i)] = float(np.dot(vector, query))
        return out

    def _search_gpu(
        self, query: npt.NDArray[np.float32], k: int, allowed: Sequence[int] | None
    ) -> list[tuple[int, float]] | None:
        """Top ``k`` on the GPU copy; None when a filter left too few of the hits fetched."""
        if self._is_ivf():
            self._gpu.nprobe = self._nprobe()
        fetch = k if allowed is None else min(GPU_MAX_K, self.size, k * GPU_OVERFETCH)
        scores, ids = self._gpu.search(query.reshape(1, -1), min(fetch, GPU_MAX_K))
        keep = None if allowed is None else set(allowed)
        hits = [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and (keep is None or int(i) in keep)
        ]
        if len(hits) >= k or fetch >= self.size:
            return hits[:k]
        return None

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
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # vectors read back by id (cosines)
        log.info("vector index: %d vectors, now IVF with %d lists", n, nlist)
        return ivf

    # ---------------- persistence ----------------
    def save(self, path: Path) -> None:
        """Write beside the old file and rename over it: a failed save (disk full, read-only)
        leaves the last saved index whole and no partial file behind."""
        with self._lock:
            tmp = path.with_suffix(".tmp")
            meta = path.with_suffix(".json")
            try:
                faiss.write_index(self._index, str(tmp))
                tmp.replace(path)
                meta.with_suffix(".json.tmp").write_text(
                    json.dumps({"last_id": self.last_id, "size": self.size})
                )
                meta.with_suffix(".json.tmp").replace(meta)
            finally:
                for leftover in (tmp, meta.with_suffix(".json.tmp")):
                    leftover.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, ivf_threshold: int = 200_000, gpu: bool = False) -> VectorIndex:
        """Load a saved index; raises ValueError if it is missing or unreadable."""
        index = cls(ivf_threshold, gpu)
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
        index._mirror()
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

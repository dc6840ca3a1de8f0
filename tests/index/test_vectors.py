from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxindex.index.vectors import VectorIndex


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Vectors with topic structure, like sentence embeddings (uniform noise is IVF's worst case)."""
    rng = np.random.default_rng(seed)
    centres = unit(200, 12345)  # the same topics for data and queries
    x = (
        centres[rng.integers(0, 200, n)]
        + 0.35 * rng.standard_normal((n, 384)).astype(np.float32) / np.sqrt(384) * 10
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_flat_search_filter_remove_and_persist(tmp_path: Path) -> None:
    index = VectorIndex()
    vectors = unit(100)
    index.add(list(range(1, 101)), vectors)
    assert index.search(vectors[41], 1) == [(42, pytest.approx(1.0, abs=1e-5))]
    assert [i for i, _ in index.search(vectors[41], 3, allowed=[7, 8])] in ([7, 8], [8, 7])
    index.remove([42])
    assert index.search(vectors[41], 1)[0][0] != 42
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.size == 99 and loaded.last_id == 100 and 42 not in loaded.ids()


def test_ivf_past_the_threshold_keeps_recall(tmp_path: Path) -> None:
    data = clustered(6000)
    flat, ivf = VectorIndex(ivf_threshold=10**9), VectorIndex(ivf_threshold=5000)
    ids = list(range(1, 6001))
    for index in (flat, ivf):
        index.add(ids[:3000], data[:3000])
        index.add(ids[3000:], data[3000:])
    assert flat.kind == "flat" and ivf.kind == "ivf"
    queries = clustered(100, seed=5)
    recall = np.mean(
        [len({i for i, _ in flat.search(q, 10)} & {i for i, _ in ivf.search(q, 10)}) / 10 for q in queries]
    )
    assert recall >= 0.95
    ivf.remove([1, 2, 3])
    assert ivf.size == 5997 and 1 not in ivf.ids()
    ivf.save(tmp_path / "v.faiss")
    assert VectorIndex.load(tmp_path / "v.faiss").kind == "ivf"


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_damaged_files_are_reported(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "v.faiss"
    index = VectorIndex()
    index.add([1, 2], unit(2))
    index.save(path)
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not an index at all")
    else:
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError):
        VectorIndex.load(path)

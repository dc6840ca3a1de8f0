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


def test_without_gpu_faiss_the_index_searches_on_the_cpu_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from voxindex.index.vectors import gpu_unavailable

    reason = gpu_unavailable()
    if reason is None:
        pytest.skip("this faiss searches on a GPU: the GPU test covers it")
    with caplog.at_level("WARNING", logger="voxindex.index"):
        index = VectorIndex(gpu=True)
    assert index.device == "cpu"
    assert any(reason in r.getMessage() and "stays on the CPU" in r.getMessage() for r in caplog.records)
    vectors = unit(50)
    index.add(list(range(1, 51)), vectors)
    assert index.search(vectors[9], 1)[0][0] == 10


@pytest.mark.needs_cuda
def test_the_gpu_copy_answers_as_the_cpu_index_with_filters_removals_and_ivf() -> None:
    from voxindex.index.vectors import gpu_unavailable

    reason = gpu_unavailable()
    if reason is not None:
        pytest.skip(f"GPU FAISS: {reason}")
    data, queries = clustered(20_000, 0), clustered(50, 1)
    ids = list(range(1, 20_001))
    for threshold in (10**9, 10_000):  # flat, and IVF once past the threshold
        cpu, gpu = VectorIndex(threshold), VectorIndex(threshold, gpu=True)
        assert gpu.device == "cuda"
        for index in (cpu, gpu):
            index.add(ids[:15_000], data[:15_000])
            index.add(ids[15_000:], data[15_000:])
            index.remove(ids[:100])
        tenant = ids[5000:5300]  # a small filter: most GPU hits are thrown away, the CPU answers
        same = []
        for q in queries:
            for allowed in (None, tenant):
                got = {i for i, _ in gpu.search(q, 10, allowed)}
                want = {i for i, _ in cpu.search(q, 10, allowed)}
                assert len(got) == 10 and not got & set(ids[:100])
                assert allowed is None or got <= set(tenant)
                same.append(len(got & want) / 10)
        # GPU and CPU kernels sum in different orders: near-equal scores may swap at the 10th hit
        assert np.mean(same) >= 0.98, threshold


@pytest.mark.parametrize("threshold", [10**9, 500])  # flat, then IVF
def test_cosines_read_each_held_vector_back_by_id_even_after_reloading(
    tmp_path: Path, threshold: int
) -> None:
    """A keyword hit's meaning, without a search: the cosine with its stored vector; ids not held
    (removed, or not embedded yet) are left out."""
    index = VectorIndex(ivf_threshold=threshold)
    data = clustered(1000)
    index.add(list(range(1, 1001)), data)
    index.remove([5])
    assert index.kind == ("ivf" if threshold < 1000 else "flat")
    index.save(tmp_path / "v.faiss")
    query = data[9]
    for held in (index, VectorIndex.load(tmp_path / "v.faiss", threshold)):
        got = held.cosines(query, [10, 700, 5, 5000])
        assert set(got) == {10, 700}
        assert got[10] == pytest.approx(1.0, abs=1e-5)
        assert got[700] == pytest.approx(float(data[699] @ query), abs=1e-5)

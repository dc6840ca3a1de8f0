from __future__ import annotations

import numpy as np

from voxindex.engine.align import dtw


def test_dtw_follows_the_cheap_diagonal() -> None:
    cost = np.ones((3, 6), np.float32)
    for i, j in [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]:
        cost[i, j] = 0
    tokens, frames = dtw(cost)
    assert list(frames) == [0, 1, 2, 3, 4, 5]
    assert list(tokens) == [0, 0, 1, 1, 2, 2]


def _dtw_reference(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plain cell-by-cell DTW (OpenAI's ``timing.dtw_cpu`` loop, with the tie rule this
    project always had: diagonal, then down, then right), to check the vectorised one."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    acc[0, 0] = 0.0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 <= c1 and c0 <= c2:
                best, t = c0, 0
            elif c1 <= c2:
                best, t = c1, 1
            else:
                best, t = c2, 2
            acc[i, j] = cost[i - 1, j - 1] + best
            trace[i, j] = t
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        i, j = (i - 1, j - 1) if trace[i, j] == 0 else (i - 1, j) if trace[i, j] == 1 else (i, j - 1)
    path.reverse()
    arr = np.array(path)
    return arr[:, 0], arr[:, 1]


def test_vectorised_dtw_finds_the_cell_by_cell_path() -> None:
    """Random costs (z-scored like attention), and costs with flat runs where paths tie."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        n, m = int(rng.integers(1, 40)), int(rng.integers(1, 300))
        cost = rng.standard_normal((n, m)).astype(np.float32)
        if trial % 4 == 0:
            cost = np.round(cost)  # many equal cells: ties everywhere
        ours = dtw(cost)
        theirs = _dtw_reference(cost)
        np.testing.assert_array_equal(ours[0], theirs[0], err_msg=str(trial))
        np.testing.assert_array_equal(ours[1], theirs[1], err_msg=str(trial))

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

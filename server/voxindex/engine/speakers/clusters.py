"""Speaker clusters over voice embeddings: online for live streams, whole-file for recordings.

A cluster is a speaker: the running sum of its windows' unit embeddings (its centroid is that
sum, normalised). Only centroids are kept, so a stream's memory is
bounded however long it runs. Labels are the clusters' order of birth and never change.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

# Cosine of a window's embedding to a speaker's centroid at which it is that speaker: tuned on the
# bundled real recordings and the Piper voice (benchmarks/speakers.py, BENCHMARKS.md "speakers").
JOIN = 0.75
# A window this far below every known speaker is someone new even on its own (end of a stream's
# utterance, no later window to confirm it).
NEW_ALONE = 0.62
# Mean cosine between two groups of windows at which they are one speaker (average linkage):
# windows of one person average 0.73-0.83 here, of two people 0.45-0.60 (BENCHMARKS.md)
GROUP = 0.65
CONFIDENCE_SCALE = 0.05  # cosine margin that makes a label ~73 % sure
MAX_SPEAKERS = 8


def _unit(v: Vector) -> Vector:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class OnlineClusters:
    def __init__(self, join: float = JOIN, max_speakers: int = MAX_SPEAKERS) -> None:
        self.join = join
        self.max_speakers = max_speakers
        self._sums: list[Vector] = []

    def __len__(self) -> int:
        return len(self._sums)

    @property
    def full(self) -> bool:
        return len(self._sums) >= self.max_speakers

    def similarities(self, e: Vector) -> Vector:
        if not self._sums:
            return np.zeros(0, np.float32)
        centroids = np.stack([_unit(s) for s in self._sums])
        return (centroids @ e).astype(np.float32)

    def best(self, e: Vector) -> tuple[int, float]:
        sims = self.similarities(e)
        k = int(np.argmax(sims))
        return k, float(sims[k])

    def add(self, speaker: int, e: Vector) -> None:
        self._sums[speaker] = self._sums[speaker] + e

    def open(self, first: Vector) -> int:
        """A new speaker whose centroid starts at ``first`` (its windows' mean); its windows
        are ``add``ed after."""
        self._sums.append(first.astype(np.float32).copy())
        return len(self._sums) - 1

    def confidence(self, speaker: int, e: Vector) -> float:
        """How clearly ``e`` is ``speaker``: a softmax over the speakers' cosines (one speaker:
        its cosine against the join threshold)."""
        sims = self.similarities(e)
        if sims.size == 1:
            return float(1 / (1 + np.exp(-(sims[0] - self.join) / CONFIDENCE_SCALE)))
        return softmax_share(sims, speaker)


def softmax_share(sims: npt.NDArray[np.floating], k: int) -> float:
    """Speaker ``k``'s share of a softmax over cosines (at ``CONFIDENCE_SCALE``)."""
    z = np.exp((sims - sims.max()) / CONFIDENCE_SCALE)
    return float(z[k] / z.sum())


def cluster_offline(embeddings: Vector, join: float = GROUP, max_clusters: int = MAX_SPEAKERS) -> list[int]:
    """Agglomerative clustering with average linkage on cosine (UPGMA): merge the two groups
    whose windows are most alike on average while that average is at least ``join`` or there are
    more than ``max_clusters``. Average linkage, not centroids: two large groups of different
    people have centroids more alike than any two of their windows. Labels are numbered by first
    appearance. O(n²) memory in the windows: callers pass at most a few thousand."""
    n = len(embeddings)
    if n == 0:
        return []
    sims = (embeddings @ embeddings.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    sizes = np.ones(n)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    while len(members) > 1:
        a, b = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[a, b] < join and len(members) <= max_clusters:
            break
        row = (sims[a] * sizes[a] + sims[b] * sizes[b]) / (sizes[a] + sizes[b])
        sizes[a] += sizes[b]
        members[int(a)] += members.pop(int(b))
        row[a] = -np.inf
        sims[a], sims[:, a] = row, row
        sims[b], sims[:, b] = -np.inf, -np.inf
    labels = np.zeros(n, int)
    for k, idx in enumerate(sorted(members.values(), key=min)):
        labels[idx] = k
    return [int(x) for x in labels]

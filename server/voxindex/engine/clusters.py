"""Speaker clusters over voice embeddings: online for live streams, whole-file for recordings.

A cluster is a speaker: the running sum of its windows' unit embeddings (its centroid is that
sum, normalised) and how many windows it has. Only centroids are kept, so a stream's memory is
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
        self._counts: list[int] = []

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
        self._counts[speaker] += 1

    def open(self, first: Vector) -> int:
        """A new speaker whose centroid starts at ``first`` (its windows' mean); its windows
        are ``add``ed after."""
        self._sums.append(first.astype(np.float32).copy())
        self._counts.append(0)
        return len(self._sums) - 1

    def confidence(self, speaker: int, e: Vector) -> float:
        """How clearly ``e`` is ``speaker``: a softmax over the speakers' cosines (one speaker:
        its cosine against the join threshold)."""
        sims = self.similarities(e)
        if sims.size == 1:
            return float(1 / (1 + np.exp(-(sims[0] - self.join) / CONFIDENCE_SCALE)))
        z = np.exp((sims - sims.max()) / CONFIDENCE_SCALE)
        return float(z[speaker] / z.sum())


def cluster_offline(
    embeddings: Vector, join: float = JOIN, max_clusters: int = MAX_SPEAKERS, min_clusters: int = 1
) -> list[int]:
    """Agglomerative clustering with centroid linkage on cosine: merge the two groups whose
    centroids are most alike while they are at least ``join`` alike (the threshold a window
    joins a speaker at) or there are more than ``max_clusters``. Labels are numbered by first
    appearance. O(n²) memory in the windows: callers pass at most a few thousand."""
    n = len(embeddings)
    if n == 0:
        return []
    sums = embeddings.astype(np.float64).copy()
    units = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    sims = units @ units.T
    np.fill_diagonal(sims, -np.inf)
    alive = np.ones(n, bool)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    while len(members) > min_clusters:
        a, b = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[a, b] < join and len(members) <= max_clusters:
            break
        sums[a] += sums[b]
        alive[b] = False
        members[int(a)] += members.pop(int(b))
        units[a] = sums[a] / np.linalg.norm(sums[a])
        row = units @ units[a]
        row[~alive] = -np.inf
        row[a] = -np.inf
        sims[a], sims[:, a] = row, row
        sims[b], sims[:, b] = -np.inf, -np.inf
    labels = np.zeros(n, int)
    for k, idx in enumerate(sorted(members.values(), key=min)):
        labels[idx] = k
    return [int(x) for x in labels]

"""One diarized stream's speaker history: its voice windows, clusters and labelled timeline."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from voxindex.audio import Float32Array
from voxindex.engine.speakers.clusters import (
    NEW_ALONE,
    OnlineClusters,
    Vector,
    cluster_offline,
)
from voxindex.engine.speakers.timeline import Timeline
from voxindex.engine.vad import CHUNK_S

WINDOW_S = 1.2
HOP_S = 0.4
VOICED = 0.5  # VAD probability of a chunk that is voice
# a new speaker takes this much distinct voice unlike every known one (windows that overlap
# almost wholly, a final's short read and the window before it, count once), or a shorter group
# clearly unlike every known speaker (NEW_ALONE)
MIN_NEW_S = WINDOW_S
MIN_TAIL_S = 0.5  # voice shorter than this is labelled from its neighbours, not read on its own
PAUSE_S = 0.1  # unvoiced time that ends a stretch of voice: windows stay within one stretch
WINDOW_CHUNKS = round(WINDOW_S / CHUNK_S)
HOP_CHUNKS = round(HOP_S / CHUNK_S)
MAX_OFFLINE_WINDOWS = 600  # clustered pairwise; the rest of a long recording joins the nearest
FORGET_S = 2.0  # spans this far before a stream's last final are dropped


@dataclass
class Window:
    audio: Float32Array
    ends: npt.NDArray[np.float64]  # end time of each chunk of ``audio``
    through: float  # labels the chunks ending after the track's last label, up to this time
    embedding: Vector | None = None


@dataclass
class SpeakerHistory:
    """One diarized stream's speakers: recent voice, clusters (centroids only), the windows read
    since the last final, and the labels."""

    clusters: OnlineClusters = field(default_factory=OnlineClusters)
    timeline: Timeline = field(default_factory=Timeline)
    read: list[Window] = field(default_factory=list)  # embedded, not labelled yet (this utterance)
    # the current stretch of voice, long enough for a final's tail window ending before the
    # newest chunks (a full window is the last WINDOW_CHUNKS of it)
    _audio: deque[Float32Array] = field(default_factory=lambda: deque(maxlen=2 * WINDOW_CHUNKS))
    _ends: deque[float] = field(default_factory=lambda: deque(maxlen=2 * WINDOW_CHUNKS))
    _since: int = 0  # voiced chunks since the last window
    _labelled: float = -1.0  # end time of the last labelled chunk
    _unread: bool = False  # voice arrived since the last window

    def hear(self, chunks: Float32Array, probs: Float32Array, ends: npt.NDArray[np.float64]) -> list[Window]:
        """New VAD chunks (n, CHUNK) with their probabilities and end times: the windows due."""
        due = []
        for audio, p, end in zip(chunks, probs, ends, strict=True):
            if p < VOICED:
                continue
            if self._ends and end - self._ends[-1] > PAUSE_S + CHUNK_S:
                # a pause: speakers change there, so no window spans it (one would mix voices)
                last = self.tail()
                if last is not None:
                    due.append(last)
                self._audio.clear()
                self._ends.clear()
                self._since = 0
            self._audio.append(audio)
            self._ends.append(float(end))
            self._since += 1
            self._unread = True
            if len(self._audio) >= WINDOW_CHUNKS and self._since >= HOP_CHUNKS:
                due.append(self._window(tail=False))
        return due

    def tail(self) -> Window | None:
        """The voice of the stretch a pause ended, heard since its last window."""
        if not self._unread or min(len(self._audio), WINDOW_CHUNKS) * CHUNK_S < MIN_TAIL_S:
            return None
        return self._window(tail=True)

    def _window(self, tail: bool) -> Window:
        self._since = 0
        self._unread = False
        ends = np.array(self._ends)[-WINDOW_CHUNKS:]
        # a full window labels its middle: the chunks up to HOP_CHUNKS before its end
        through = ends[-1] if tail or len(ends) <= HOP_CHUNKS else ends[-1 - HOP_CHUNKS]
        return Window(np.concatenate(list(self._audio)[-WINDOW_CHUNKS:]), ends, float(through))

    def final_tail(self, until: float) -> Window | None:
        """For a final ending at ``until``: the stretch's last window of voice up to ``until``
        (as the pause after it would read it), where no window ``resolve(until)`` takes labels
        that voice yet. It depends only on the audio up to ``until``, never on how much was
        heard after it when the final is made, and leaves the stretch's hop windows as they were."""
        covered = max([w.through for w in self.read if _heard_by(w, until)] + [self._labelled])
        ends = list(self._ends)
        last = max((i for i, end in enumerate(ends) if end <= until), default=None)
        if covered >= until - CHUNK_S or last is None or ends[last] <= covered:
            return None
        first = max(0, last + 1 - WINDOW_CHUNKS)
        if (last + 1 - first) * CHUNK_S < MIN_TAIL_S:
            return None
        if last == len(ends) - 1:  # the pause after it needs no window of its own
            self._unread = False
        audio = list(self._audio)[first : last + 1]
        return Window(np.concatenate(audio), np.array(ends[first : last + 1]), float(ends[last]))

    def resolve(self, until: float = float("inf")) -> None:
        """Label the windows read since the last final whose voice ends by ``until`` (the rest
        wait for the next final: which of them were heard when a final is made depends on
        timing, and a final's labels must not), all at once: each joins the speaker
        it is at least ``join`` alike; the rest are grouped among themselves, and a group
        unlike every known speaker is a new one (a lone window only if clearly unlike: one
        across a change of speaker resembles both a little). A single window whose neighbours
        agree on another speaker takes theirs."""
        windows = [w for w in self.read if _heard_by(w, until)]
        self.read = [w for w in self.read if not _heard_by(w, until)]
        if not windows:
            return
        embeddings = np.stack([w.embedding for w in windows if w.embedding is not None])
        labels = self._assign(embeddings, windows)
        for i in range(1, len(labels) - 1):
            if labels[i - 1] == labels[i + 1] != labels[i]:
                labels[i] = labels[i - 1]
        for speaker, e in zip(labels, embeddings, strict=True):
            self.clusters.add(speaker, e)
        for w, speaker, e in zip(windows, labels, embeddings, strict=True):
            self._write(w, speaker, e)

    def _assign(self, embeddings: Vector, windows: list[Window]) -> list[int]:
        c = self.clusters
        labels = [-1] * len(embeddings)
        for i, e in enumerate(embeddings):
            if len(c):
                speaker, sim = c.best(e)
                if sim >= c.join:
                    labels[i] = speaker
        rest = np.array([i for i, k in enumerate(labels) if k < 0])
        if not rest.size:
            return labels
        groups = np.array(cluster_offline(embeddings[rest], max_clusters=rest.size))
        # the largest groups first: a lone window may then join a speaker this utterance made
        for g in sorted(range(int(groups.max()) + 1), key=lambda g: -int(np.sum(groups == g))):
            idx = rest[groups == g]
            mean = np.sum(embeddings[idx], axis=0)
            mean /= np.linalg.norm(mean)
            speaker, sim = c.best(mean) if len(c) else (-1, -1.0)
            voice = len({float(e) for i in idx for e in windows[int(i)].ends}) * CHUNK_S
            lone = voice < MIN_NEW_S
            known = sim >= c.join or (lone and sim >= NEW_ALONE)
            if speaker < 0 or not (known or c.full):
                speaker = c.open(mean)
            for i in idx:
                labels[int(i)] = speaker
        return labels

    def _write(self, w: Window, speaker: int, e: Vector) -> None:
        confidence = self.clusters.confidence(speaker, e)
        self._labelled = label_window(self.timeline, w, self._labelled, speaker, confidence)


def label_window(timeline: Timeline, w: Window, labelled: float, speaker: int, confidence: float) -> float:
    """Label the chunks of ``w`` after ``labelled`` up to its ``through``; the new last label."""
    fresh = w.ends[(w.ends > labelled) & (w.ends <= w.through)]
    for end in fresh:
        timeline.add(end - CHUNK_S, end, speaker, confidence)
    return float(fresh[-1]) if fresh.size else labelled


def _heard_by(w: Window, until: float) -> bool:
    """Whether all of the window's voice was spoken by ``until`` (a final's end)."""
    return bool(w.ends[-1] <= until)

"""Speaker labels for live streams (online) and recordings (whole file).

Live: a diarized stream's voiced audio (VAD chunks of 32 ms, silence left out) is read in
windows of ``WINDOW_S`` every ``HOP_S`` of voice, never across a pause. ``Speakers.embed`` runs
the speaker encoder over every stream's due windows in one batch, on the model's device (the
speaker worker calls it, off the engine's thread). A window labels the middle of its span (its
edges belong to the windows before and after), so a change of speaker moves the labels within
~``HOP_S``. When a final is made, ``label`` reads the voice not yet windowed (one short window)
and ``SpeakerTrack.resolve`` assigns the windows read since the last final together, so the
final carries labels for all its words without waiting for later audio.

Recordings: ``diarize_recording`` reads the whole file's voiced windows, clusters them all at
once (agglomerative, better than online: every window sees every other), and returns the
timeline the recording's segments are labelled from.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from voxindex.audio import Float32Array
from voxindex.engine.align import Word
from voxindex.engine.clusters import (
    GROUP,
    MAX_SPEAKERS,
    NEW_ALONE,
    OnlineClusters,
    Vector,
    cluster_offline,
    softmax_share,
)
from voxindex.engine.speaker_labels import Timeline
from voxindex.engine.vad import CHUNK, CHUNK_S
from voxindex.errors import SpeakersUnavailableError
from voxindex.models.speaker import SpeakerEncoder

log = logging.getLogger("voxindex.engine")

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
class SpeakerTrack:
    """One diarized stream's speakers: recent voice, clusters (centroids only), the windows read
    since the last final, and the labels."""

    clusters: OnlineClusters = field(default_factory=OnlineClusters)
    timeline: Timeline = field(default_factory=Timeline)
    read: list[Window] = field(default_factory=list)  # embedded, not labelled yet (this utterance)
    _audio: deque[Float32Array] = field(default_factory=lambda: deque(maxlen=WINDOW_CHUNKS))
    _ends: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW_CHUNKS))
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
            if len(self._audio) == WINDOW_CHUNKS and self._since >= HOP_CHUNKS:
                due.append(self._window(tail=False))
        return due

    def tail(self) -> Window | None:
        """The voice heard since the last window, read now (a final is being made)."""
        if not self._unread or len(self._audio) * CHUNK_S < MIN_TAIL_S:
            return None
        return self._window(tail=True)

    def _window(self, tail: bool) -> Window:
        self._since = 0
        self._unread = False
        ends = np.array(self._ends)
        # a full window labels its middle: the chunks up to HOP_CHUNKS before its end
        through = ends[-1] if tail or len(ends) <= HOP_CHUNKS else ends[-1 - HOP_CHUNKS]
        return Window(np.concatenate(list(self._audio)), ends, float(through))

    def needs_tail(self, until: float) -> bool:
        """Whether the voice up to ``until`` (a final's end) has no window labelling it yet."""
        covered = max([w.through for w in self.read] + [self._labelled])
        return covered < until - CHUNK_S

    def resolve(self, until: float = float("inf")) -> None:
        """Label the windows read since the last final that start before ``until`` (the rest,
        heard past the final, wait for the next one), all at once: each joins the speaker
        it is at least ``join`` alike; the rest are grouped among themselves, and a group
        unlike every known speaker is a new one (a lone window only if clearly unlike: one
        across a change of speaker resembles both a little). A single window whose neighbours
        agree on another speaker takes theirs."""
        windows = [w for w in self.read if w.ends[0] <= until]
        self.read = [w for w in self.read if w.ends[0] > until]
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
        self._labelled = _label_window(self.timeline, w, self._labelled, speaker, confidence)


def _label_window(timeline: Timeline, w: Window, labelled: float, speaker: int, confidence: float) -> float:
    """Label the chunks of ``w`` after ``labelled`` up to its ``through``; the new last label."""
    fresh = w.ends[(w.ends > labelled) & (w.ends <= w.through)]
    for end in fresh:
        timeline.add(end - CHUNK_S, end, speaker, confidence)
    return float(fresh[-1]) if fresh.size else labelled


class Speakers:
    """The speaker encoder and the batched work over every diarized stream."""

    def __init__(self, encoder: SpeakerEncoder) -> None:
        self.encoder = encoder
        self._due: list[tuple[SpeakerTrack, Window]] = []

    def hear(
        self, track: SpeakerTrack, chunks: Float32Array, probs: Float32Array, ends: npt.NDArray[np.float64]
    ) -> None:
        self._due += [(track, w) for w in track.hear(chunks, probs, ends)]

    def embed(self) -> int:
        """Embed every window due, in one batch, and place each in its stream. Returns how many."""
        due, self._due = self._due, []
        if not due:
            return 0
        for (track, w), e in zip(due, self.embeddings([w.audio for _, w in due]), strict=True):
            w.embedding = e
            w.audio = w.audio[:0]  # only the embedding is kept
            track.read.append(w)
        return len(due)

    def label(self, track: SpeakerTrack, words: list[Word]) -> list[Word]:
        """A final's words with their speakers (the voice not yet windowed is read first)."""
        self.embed()
        until = words[-1].end if words else float("inf")
        w = track.tail() if track.needs_tail(until) else None
        if w is not None:
            w.embedding = self.embeddings([w.audio])[0]
            track.read.append(w)
        track.resolve(until)
        labelled = track.timeline.label(words)
        if words:
            track.timeline.forget_before(words[-1].end - FORGET_S)
        return labelled

    def embeddings(self, clips: list[Float32Array]) -> list[Vector]:
        """Unit embeddings of clips (padded to the longest by repetition of nothing: zeros at
        the front, which the LSTM's final state forgets)."""
        n = max(c.size for c in clips)
        batch = np.zeros((len(clips), n), np.float32)
        for i, c in enumerate(clips):
            batch[i, n - c.size :] = c
        out = self.encoder(torch.from_numpy(batch)).float().cpu().numpy()
        return list(out)


def diarize_recording(
    speakers: Speakers,
    audio: Float32Array,
    speech: npt.NDArray[np.float32],
    join: float = GROUP,
    max_speakers: int = MAX_SPEAKERS,
) -> Timeline:
    """A whole recording's speaker timeline: voiced windows (``speech``: VAD probability per
    chunk), embedded in batches, clustered all at once."""
    n = min(len(speech), audio.size // CHUNK)
    chunks = audio[: n * CHUNK].reshape(n, CHUNK)
    ends = np.arange(1, n + 1, dtype=np.float64) * CHUNK_S
    track = SpeakerTrack()
    windows = track.hear(chunks, speech[:n], ends)
    tail = track.tail()
    if tail is not None:
        windows.append(tail)
    timeline = Timeline()
    if not windows:
        return timeline
    vectors: list[Vector] = []
    for i in range(0, len(windows), 64):
        vectors += speakers.embeddings([w.audio for w in windows[i : i + 64]])
    embeddings = np.stack(vectors)
    step = max(1, -(-len(windows) // MAX_OFFLINE_WINDOWS))
    sample = cluster_offline(embeddings[::step], join, max_speakers)
    centroids = np.stack(
        [embeddings[::step][np.array(sample) == k].mean(axis=0) for k in range(max(sample) + 1)]
    )
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = embeddings @ centroids.T
    labels = sims.argmax(axis=1)
    labelled = -1.0
    for w, k, row in zip(windows, labels, sims, strict=True):
        confidence = softmax_share(row, int(k)) if len(row) > 1 else 1.0
        labelled = _label_window(timeline, w, labelled, int(k), confidence)
    return timeline


def load_speakers(device: torch.device) -> Speakers | None:
    """The speaker encoder on ``device``, warmed up; None (logged) where its weights are not
    installed: streams asking for ``diarize`` then get ``speakers_unavailable``."""
    try:
        speakers = Speakers(SpeakerEncoder(device))
    except SpeakersUnavailableError as e:
        log.warning("speaker labels unavailable: %s", e.message)
        return None
    speakers.embeddings([np.zeros(WINDOW_CHUNKS * CHUNK, np.float32)] * 2)
    return speakers

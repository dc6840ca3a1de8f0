"""The speaker encoder's batched work: embedding every diarized stream's due windows, labelling a
final's words, and diarizing a whole recording."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch

from voxindex.audio import Float32Array
from voxindex.engine.speakers.clusters import (
    GROUP,
    MAX_SPEAKERS,
    Vector,
    cluster_offline,
    softmax_share,
)
from voxindex.engine.speakers.history import (
    FORGET_S,
    MAX_OFFLINE_WINDOWS,
    WINDOW_CHUNKS,
    SpeakerHistory,
    Window,
    label_window,
)
from voxindex.engine.speakers.timeline import Timeline
from voxindex.engine.types import Word
from voxindex.engine.vad import CHUNK, CHUNK_S
from voxindex.errors import SpeakersUnavailableError
from voxindex.models.speaker import SpeakerEncoder

log = logging.getLogger("voxindex.engine")


class Speakers:
    """The speaker encoder and the batched work over every diarized stream."""

    def __init__(self, encoder: SpeakerEncoder) -> None:
        self.encoder = encoder
        self._due: list[tuple[SpeakerHistory, Window]] = []

    def hear(
        self, track: SpeakerHistory, chunks: Float32Array, probs: Float32Array, ends: npt.NDArray[np.float64]
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

    def label(self, track: SpeakerHistory, words: list[Word]) -> list[Word]:
        """A final's words with their speakers (the voice not yet windowed is read first)."""
        self.embed()
        until = words[-1].end if words else float("inf")
        w = track.final_tail(until)
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
    track = SpeakerHistory()
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
        labelled = label_window(timeline, w, labelled, int(k), confidence)
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

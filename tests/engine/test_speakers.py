"""Speaker windows, clusters and labels on real speech of distinct people (no Whisper)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conversations import attribution, conversation, monologue, speaker_of, voices
from voxindex.engine.speakers.clusters import cluster_offline
from voxindex.engine.speakers.history import SpeakerHistory
from voxindex.engine.speakers.labeller import Speakers, diarize_recording, load_speakers
from voxindex.engine.speakers.timeline import Timeline, dominant
from voxindex.engine.types import Word
from voxindex.engine.vad import CHUNK, CHUNK_S, Vad, VadState
from voxindex.errors import SpeakersUnavailableError

CLIPS = voices()


@pytest.fixture(scope="module")
def speakers() -> Speakers:
    loaded = load_speakers(torch.device("cpu"))
    assert loaded is not None
    return loaded


def stream_through(speakers: Speakers, audio: np.ndarray, finals_every_s: float = 4.0) -> SpeakerHistory:
    """Feed a track as the scheduler does: VAD chunks in 0.1 s steps, a batch per step, a
    final (``label``) every few seconds."""
    track = SpeakerHistory()
    probs = Vad()([VadState()], [audio])[0]
    n = len(probs)
    chunks = audio[: n * CHUNK].reshape(n, CHUNK)
    ends = np.arange(1, n + 1, dtype=np.float64) * CHUNK_S
    next_final = finals_every_s
    for k in range(0, n, 3):
        speakers.hear(track, chunks[k : k + 3], probs[k : k + 3], ends[k : k + 3])
        speakers.embed()
        if ends[min(k + 2, n - 1)] >= next_final:
            speakers.label(track, [])
            next_final += finals_every_s
    speakers.label(track, [])
    return track


def word_grid(turns: list, step: float = 0.25) -> list[tuple[Word, int]]:
    return [
        (Word("x", t, t + step, 1.0), turn.speaker)
        for turn in turns
        for t in np.arange(turn.start, turn.end - step, step)
    ]


def test_a_conversation_is_labelled_by_turn_and_memory_stays_bounded(speakers: Speakers) -> None:
    audio, turns = conversation(CLIPS, ["librivox", "cards", "command"], turns=12, seed=2)
    track = stream_through(speakers, audio)
    grid = word_grid(turns)
    labelled = track.timeline.label([w for w, _ in grid])
    assert attribution([(t, w.speaker) for (_, t), w in zip(grid, labelled, strict=True)]) >= 0.9
    assert len(track.clusters) == 3
    assert not track.read  # windows are labelled at each final, then only centroids remain


def test_one_voice_for_minutes_keeps_one_label(speakers: Speakers) -> None:
    audio = monologue(CLIPS["librivox"], seconds=120, seed=4)
    track = stream_through(speakers, audio)
    assert len(track.clusters) == 1


def test_spans_before_the_last_final_are_forgotten(speakers: Speakers) -> None:
    audio = monologue(CLIPS["cards"], seconds=60, seed=1)
    track = SpeakerHistory()
    probs = Vad()([VadState()], [audio])[0]
    n = len(probs)
    speakers.hear(
        track, audio[: n * CHUNK].reshape(n, CHUNK), probs, np.arange(1, n + 1, dtype=np.float64) * CHUNK_S
    )
    speakers.label(track, [Word(" x", 58.0, 58.2, 1.0)])
    spans = track.timeline.spans  # a minute of voice labelled; what is kept is the last stretch
    assert 1 <= len(spans) <= 3 and all(span.end >= 50.0 for span in spans)


def test_whole_file_clustering_separates_three_people(speakers: Speakers) -> None:
    audio, turns = conversation(CLIPS, ["librivox", "cards", "command"], turns=10, seed=7)
    probs = Vad()([VadState()], [audio])[0]
    timeline = diarize_recording(speakers, audio, probs)
    grid = word_grid(turns)
    labelled = timeline.label([w for w, _ in grid])
    assert attribution([(t, w.speaker) for (_, t), w in zip(grid, labelled, strict=True)]) >= 0.9
    assert {w.speaker for w in labelled} == {0, 1, 2}


def test_cluster_offline_numbers_by_first_appearance_and_caps() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=256), rng.normal(size=256)
    rows = [a + 0.1 * rng.normal(size=256) for _ in range(3)] + [
        b + 0.1 * rng.normal(size=256) for _ in range(3)
    ]
    e = np.stack([r / np.linalg.norm(r) for r in rows[3:] + rows[:3]]).astype(np.float32)
    assert cluster_offline(e) == [0, 0, 0, 1, 1, 1]
    assert cluster_offline(e, join=1.01, max_clusters=2) == [0, 0, 0, 1, 1, 1]  # the cap merges
    assert cluster_offline(e[:0]) == []


def test_a_word_takes_the_span_it_overlaps_most_and_a_final_its_main_speaker() -> None:
    timeline = Timeline()
    timeline.add(0.0, 1.0, 0, 0.9)
    timeline.add(1.0, 3.0, 1, 0.8)
    words = timeline.label([Word(" a", 0.2, 0.5, 1.0), Word(" b", 0.9, 1.6, 1.0), Word(" c", 4.0, 4.2, 1.0)])
    assert [w.speaker for w in words] == [0, 1, 1]  # c: in no span, the nearest
    assert words[0].speaker_confidence == 0.9
    assert dominant(words) == 1 and dominant([Word(" z", 0, 1, 1.0)]) is None


def test_truth_of_a_word_is_the_turn_it_overlaps_most() -> None:
    from tests.conversations import Turn

    turns = [Turn(0.0, 1.0, 0), Turn(1.2, 2.0, 1)]
    assert speaker_of(turns, 0.9, 1.3) == 1 and speaker_of(turns, 5.0, 6.0) is None


def test_a_missing_encoder_refuses_diarize_with_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from voxindex.models import speaker

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpeakersUnavailableError) as e:
        speaker.weights_path()
    assert e.value.code == "speakers_unavailable" and "resemblyzer" in e.value.message
    assert load_speakers(torch.device("cpu")) is None

"""Cutting recordings into windows that never cut a word, and transcripts into segments."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from voxindex.engine.events import Final
from voxindex.engine.reading import Reading
from voxindex.engine.recordings import (
    STORE_RETRY_S,
    WINDOW_S,
    Recordings,
    RecordingWork,
    Window,
    plan_windows,
    split_segments,
)
from voxindex.engine.types import Word
from voxindex.engine.vad import CHUNK_S
from voxindex.index.sqlite import Store


def speech_track(duration: float, spans: list[tuple[float, float]]) -> np.ndarray:
    probs = np.zeros(int(duration / CHUNK_S), np.float32)
    for a, b in spans:
        probs[int(a / CHUNK_S) : int(b / CHUNK_S)] = 0.9
    return probs


def test_windows_cover_all_speech_and_start_and_end_in_silence() -> None:
    spans = [(2.0, 9.0), (10.0, 19.5), (21.0, 27.0), (40.0, 44.0), (44.5, 60.0)]
    windows = plan_windows(speech_track(70, spans), 70.0)
    assert all(w.end - w.start <= WINDOW_S + 1e-6 for w in windows)
    assert all(a.end <= b.start for a, b in itertools.pairwise(windows))
    for a, b in spans:  # every span lies inside one window: no word is cut
        assert any(w.start <= a and b <= w.end for w in windows), (a, b, windows)
    assert windows[0].start >= 1.7 and windows[-1].end <= 60.3  # leading/trailing silence skipped


def test_unbroken_speech_is_cut_at_its_quietest_point() -> None:
    probs = speech_track(80, [(0.0, 75.0)])
    quiet = [25.0, 50.0]
    for t in quiet:
        probs[int(t / CHUNK_S)] = 0.6  # still speech, but the least certain chunk around
    windows = plan_windows(probs, 80.0)
    cuts = [w.end for w in windows[:-1]]
    assert [round(c, 1) for c in cuts] == quiet
    assert windows[-1].end >= 75.0


def test_silence_has_no_windows() -> None:
    assert plan_windows(np.zeros(1000, np.float32), 32.0) == []


def test_segments_are_sentences_or_split_at_long_pauses() -> None:
    def w(text: str, start: float) -> Word:
        return Word(text, start, start + 0.3, 0.9)

    words = [w("Hello", 0), w("there.", 0.4), w("How", 1.0), w("are", 1.4), w("you", 3.0), w("today?", 3.4)]
    assert [[x.word for x in s] for s in split_segments(words)] == [
        ["Hello", "there."],
        ["How", "are"],
        ["you", "today?"],
    ]


class StoreSink:
    """The recording sink over a real store (what LiveIndex does, without the vector index)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def commit_window(self, recording_id: str, finals: list[Final], done_s: float, model: str) -> None:
        self.store.commit_window(recording_id, finals, done_s, model)

    def finish_recording(self, recording_id: str, language: str | None) -> None:
        self.store.update_recording(recording_id, status="indexed", language=language)

    def fail_recording(self, recording_id: str, reason: str) -> None:
        self.store.update_recording(recording_id, status="failed", reason=reason)


def test_a_window_the_store_refuses_is_read_again_once_it_takes_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.create_recording("r", "default", "a.wav", "sha", "a.wav", "tiny.en")
    recordings = Recordings(StoreSink(store), "tiny.en")
    windows = [Window(0.0, 10.0), Window(10.0, 20.0)]
    recordings.submit(RecordingWork("r", np.zeros(20 * 16000, np.float32), windows))

    def reading(t: float, text: str) -> Reading:
        return Reading(words=[Word(w, t + i, t + i + 0.5, 0.9) for i, w in enumerate(text.split())])

    other = sqlite3.connect(tmp_path / "t.sqlite3")  # the store refuses writes: a real SQLite failure
    other.execute("CREATE TRIGGER full BEFORE INSERT ON segments BEGIN SELECT RAISE(ABORT, 'full'); END")
    other.commit()
    taken = recordings.take(2)
    recordings.complete(taken, [reading(1.0, "first window words."), reading(11.0, "second window.")])
    assert store.segments_of("r") == [] and store.get_recording("r").status == "queued"  # type: ignore[union-attr]
    assert not recordings.pending()  # paused: the engine is not handed windows to lose

    other.execute("DROP TRIGGER full")
    other.commit()
    clock = time.monotonic() + STORE_RETRY_S
    monkeypatch.setattr("voxindex.engine.recordings.time.monotonic", lambda: clock)
    assert recordings.pending()
    again = recordings.take(2)
    assert [w for _, w, _ in again] == windows  # both windows again, in order
    recordings.complete(again, [reading(1.0, "first window words."), reading(11.0, "second window.")])
    assert [s.text for s in store.segments_of("r")] == ["first window words.", "second window."]
    assert [s.segment_index for s in store.segments_of("r")] == [0, 1]
    assert store.get_recording("r").status == "indexed"  # type: ignore[union-attr]

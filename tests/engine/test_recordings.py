"""Cutting recordings into windows that never cut a word, and transcripts into segments."""

from __future__ import annotations

import itertools

import numpy as np

from voxindex.engine.align import Word
from voxindex.engine.recordings import WINDOW_S, plan_windows, split_segments
from voxindex.engine.vad import CHUNK_S


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

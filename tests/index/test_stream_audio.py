"""Kept stream audio on disk: the Opus writer's file, what a crash leaves, the retention sweep."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from tests.conftest import load_fixture
from voxindex.audio import decode_file
from voxindex.index.stream_audio import StreamAudio


def test_audio_written_in_odd_pieces_decodes_to_the_same_samples(tmp_path: Path) -> None:
    speech = load_fixture("goforward.wav")
    audio = StreamAudio(tmp_path, retention_s=60)
    writer = audio.open("s1")
    for i in range(0, speech.size, 1234):  # pieces that are not Opus frames
        writer.write(speech[i : i + 1234])
    writer.close()
    kept = decode_file(audio.path("s1"))
    assert kept.size == speech.size
    assert np.corrcoef(kept, speech)[0, 1] > 0.95  # lossy, but the same speech at the same times


def test_a_crash_leaves_the_audio_up_to_about_a_second_before(tmp_path: Path) -> None:
    speech = np.concatenate([load_fixture("goforward.wav")] * 3)
    audio = StreamAudio(tmp_path, retention_s=60)
    writer = audio.open("s1")
    writer.write(speech)  # never closed: the process died
    kept = decode_file(audio.path("s1"))
    assert kept.size / 16000 >= speech.size / 16000 - 2.0


def test_the_sweep_removes_finished_files_past_the_retention_only(tmp_path: Path) -> None:
    audio = StreamAudio(tmp_path, retention_s=100)
    speech = load_fixture("goforward.wav")
    for name in ("old", "new", "live"):
        writer = audio.open(name)
        writer.write(speech)
        if name != "live":
            writer.close()
            audio.finished(name)
    hour_ago = time.time() - 3600
    os.utime(audio.path("old"), (hour_ago, hour_ago))
    os.utime(audio.path("live"), (hour_ago, hour_ago))  # still being written: never swept
    assert audio.sweep() == ["old"]
    assert not audio.has("old") and audio.has("new") and audio.has("live")
    assert audio.delete("new") and not audio.has("new") and not audio.delete("new")

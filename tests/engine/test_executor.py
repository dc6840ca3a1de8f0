"""Continuous batching in the executor: a short reading admitted beside a long one in flight
finishes first, reads what it reads alone, and the long one is not disturbed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import recordings
from voxindex.audio import SAMPLE_RATE, decode_file
from voxindex.engine.executor import Executor
from voxindex.engine.reading import Job
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel


@pytest.fixture(scope="module")
def f32(cache_dir: Path) -> WhisperModel:
    """float32: int8's dynamic quantization scales activations over the whole batch, so there a
    row's reading may depend on its neighbours."""
    return load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="float32")


def test_a_reading_joins_a_decode_in_flight_and_leaves_before_it(f32: WhisperModel) -> None:
    prose = np.concatenate([decode_file(r.path) for r in recordings("librivox")])[: 25 * SAMPLE_RATE]
    command = decode_file(next(r.path for r in recordings("pocketsphinx") if r.path.stem == "goforward"))
    long_job, short_job = Job(prose, 0.0), Job(command, 0.0)
    alone = Executor(f32, slots=2)
    long_alone, short_alone = alone.run([long_job]), alone.run([short_job])

    ex = Executor(f32, slots=2)
    (long_key,) = ex.admit([long_job])
    for _ in range(3):
        assert ex.step() == []
    (short_key,) = ex.admit([short_job])  # a final that became due: it joins the next step
    finished: list[int] = []
    readings = {}
    while len(ex):
        for key, reading in ex.step():
            finished.append(key)
            readings[key] = reading
    assert finished == [short_key, long_key]  # the short reading did not wait for the long one
    assert readings[short_key].text == short_alone[0].text and "forward" in readings[short_key].text.lower()
    assert readings[long_key].text == long_alone[0].text and len(readings[long_key].words) > 40
    assert ex.free == 2  # both slots are free again


def test_a_cancelled_reading_frees_its_slot(f32: WhisperModel) -> None:
    ex = Executor(f32, slots=1)
    (key,) = ex.admit([Job(decode_file(recordings("pocketsphinx")[0].path), 0.0)])
    assert ex.free == 0
    ex.cancel([key])
    assert ex.free == 1 and len(ex) == 0 and ex.step() == []


def test_a_reading_admitted_on_more_threads_reads_the_same_and_gives_them_back(tiny: WhisperModel) -> None:
    """The scheduler encodes a lone final on the cores the engine leaves idle (``admit``'s
    ``threads``): the words are those of one thread, and the engine's own count is restored."""
    jobs = [Job(decode_file(r.path), 0.0) for r in recordings()[:4]]
    ex = Executor(tiny, slots=1)
    before = torch.get_num_threads()
    one = ex.run(jobs)
    two = ex.run(jobs, threads=before + 1)
    assert torch.get_num_threads() == before
    assert [r.tokens for r in two] == [r.tokens for r in one]
    assert all(r.words for r in two)

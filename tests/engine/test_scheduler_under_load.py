"""No words lost under load, and no text from no speech: the scheduler stepped by hand.

The test plays the engine's clock: audio arrives in 100 ms frames and ``step()`` runs once every
``frames_per_step`` frames, so an engine that can afford a step every 0.1 s (idle) or only every
1.5 s (overloaded: readings get rare) is reproduced exactly, with no threads and no wall clock.
What a loaded engine changes is which partial readings exist; the finals must not care.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import corpus_wer, normalized_words, recordings
from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file
from voxindex.bench import speech_span
from voxindex.config import Settings
from voxindex.engine.events import Event, Final, Interim
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.stream import StreamOptions
from voxindex.models.loader import WhisperModel

FRAME = SAMPLE_RATE // 10
GAP = np.zeros(SAMPLE_RATE, np.float32)


@dataclass
class Utterance:
    start: float
    end: float
    transcript: str


def real_speech() -> tuple[Float32Array, list[Utterance]]:
    """Every real recording once, 1 s apart: cards and a command first, then LibriVox prose."""
    recs = recordings("pocketsphinx") + recordings("librivox")
    parts, utterances, t = [GAP], [], 1.0
    for rec in recs:
        clip = decode_file(rec.path)
        begin, end = speech_span(clip)
        utterances.append(Utterance(t + begin, t + end, rec.transcript))
        parts += [clip, GAP]
        t += clip.size / SAMPLE_RATE + 1.0
    return np.concatenate(parts), utterances


async def play(scheduler: Scheduler, audio: Float32Array, frames_per_step: int) -> list[Event]:
    """Feed ``audio`` frame by frame, stepping the engine once every ``frames_per_step`` frames;
    then close the stream and step until it is finished. Returns every event, in order."""
    stream = scheduler.open(StreamOptions(), asyncio.get_running_loop())
    for k, i in enumerate(range(0, audio.size, FRAME)):
        stream.push_audio(audio[i : i + FRAME])
        if (k + 1) % frames_per_step == 0:
            scheduler.step()
    stream.request_close()
    for _ in range(200):
        if stream.is_finished:
            break
        scheduler.step()
    assert stream.is_finished
    await asyncio.sleep(0)  # events were handed over with call_soon_threadsafe
    events = []
    while not stream.events.empty():
        events.append(stream.events.get_nowait())
    return events


@pytest.fixture(scope="module")
def speech() -> tuple[Float32Array, list[Utterance]]:
    return real_speech()


@pytest.mark.parametrize("frames_per_step", [1, 2, 3, 4, 6, 8, 10, 15])
async def test_finals_cover_every_utterance_however_rare_the_readings(
    tiny: WhisperModel, speech: tuple[Float32Array, list[Utterance]], frames_per_step: int
) -> None:
    audio, utterances = speech
    events = await play(Scheduler(tiny, Settings()), audio, frames_per_step)
    finals = [e for e in events if isinstance(e, Final)]
    for u in utterances:  # every voiced stretch is in the finals, with (about) all its words
        covering = [f for f in finals if f.end >= u.start and f.start <= u.end + 0.5]
        heard = sum(len(normalized_words(f.text)) for f in covering)
        assert heard >= len(normalized_words(u.transcript)) - 1, (u.transcript, [f.text for f in covering])
    reference = " ".join(u.transcript for u in utterances)
    heard = " ".join(f.text for f in finals)
    assert corpus_wer([(reference, heard)]) <= 0.15, heard
    stable: dict[int, int] = {}  # an utterance's final never has fewer words than its interims confirmed
    for e in events:
        if isinstance(e, Interim):
            stable[e.segment_id] = len(e.stable_text.split())
        elif isinstance(e, Final) and e.reason in ("endpoint", "flush", "close"):
            assert len(e.words) >= stable.get(e.segment_id, 0), e.text

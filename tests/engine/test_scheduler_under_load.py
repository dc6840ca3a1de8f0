"""No words lost under load, and no text from no speech: the scheduler stepped by hand.

The test plays the engine's clock: audio arrives in 100 ms frames and ``step()`` runs once every
``frames_per_step`` frames. A step admits due readings and decodes one token of every reading in
flight, so a reading spans several steps: stepping every frame is an engine with room to spare;
stepping every 15 frames (a reading then takes tens of seconds of audio) is one far behind,
where readings are rare and mostly stale. Reproduced exactly, with no threads and no wall
clock. What a loaded engine changes is which partial readings exist; the finals must not care.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import PROSE, Synth, corpus_wer, normalized_words, recordings
from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file
from voxindex.cli.bench import speech_span
from voxindex.config import Settings
from voxindex.engine.events import Event, Final, Interim
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.types import StreamOptions
from voxindex.models.whisper import WhisperModel

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


async def play(
    scheduler: Scheduler, audio: Float32Array, frames_per_step: int, options: StreamOptions | None = None
) -> list[Event]:
    """Feed ``audio`` frame by frame, stepping the engine once every ``frames_per_step`` frames;
    then close the stream and step until it is finished. Returns every event, in order."""
    stream = scheduler.open(options or StreamOptions(), asyncio.get_running_loop())
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
    heard: list[list[str]] = [[] for _ in utterances]
    for f in finals:  # each final belongs to the utterance it overlaps most
        overlap = [min(f.end, u.end) - max(f.start, u.start) for u in utterances]
        heard[overlap.index(max(overlap))].append(f.text)
    for u, texts in zip(utterances, heard, strict=True):  # every voiced stretch has its words
        got = sum(len(normalized_words(t)) for t in texts)
        assert got >= len(normalized_words(u.transcript)) - 1, (u.transcript, texts)
    pairs = [(u.transcript, " ".join(texts)) for u, texts in zip(utterances, heard, strict=True)]
    words = sum(len(normalized_words(r)) for r, _ in pairs)
    assert sum(len(normalized_words(h)) for _, h in pairs) <= words + 5  # and nothing heard twice
    assert corpus_wer(pairs) <= 0.15, pairs
    stable: dict[int, int] = {}  # an utterance's final never has fewer words than its interims confirmed
    for e in events:
        if isinstance(e, Interim):
            stable[e.segment_id] = len(e.stable_text.split())
        elif isinstance(e, Final) and e.reason in ("endpoint", "flush", "close"):
            assert len(e.words) >= stable.get(e.segment_id, 0), e.text


# ---------------- no text on no speech ----------------
TEN_MINUTES = 600 * SAMPLE_RATE


def quiet_room(rng: np.random.Generator) -> Float32Array:
    """A microphone in a quiet room: −70 dBFS of hiss."""
    return (3e-4 * rng.standard_normal(TEN_MINUTES)).astype(np.float32)


def room_noise(rng: np.random.Generator) -> Float32Array:
    """An office: pink noise (ventilation) swelling slowly, 50 Hz mains hum with harmonics, and
    now and then a click (a keyboard, a cup put down)."""
    n = TEN_MINUTES
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))  # 1/f power
    pink = np.fft.irfft(spectrum, n)
    pink *= 0.01 / pink.std()
    t = np.arange(n) / SAMPLE_RATE
    swell = 1.0 + 0.5 * np.sin(2 * np.pi * t / 37.0)
    hum = sum(0.003 / k * np.sin(2 * np.pi * 50 * k * t) for k in (1, 2, 3, 5))
    clicks = np.zeros(n)
    for at in rng.integers(0, n - 400, 300):
        clicks[at : at + 400] += 0.05 * rng.standard_normal(400) * np.exp(-np.arange(400) / 60)
    return (pink * swell + hum + clicks).astype(np.float32)


VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240), (530, 1840, 2480)]


def vocalise(rng: np.random.Generator, n: int, beat: int) -> np.ndarray:
    """A wordless sung line, "la li lo lu le", two syllables a beat: a glottal pulse train with
    vibrato, each syllable's vowel shaped by its formants and opened by an "l"-like onset."""
    out = np.zeros(n)
    step = beat // 2
    t = np.arange(step) / SAMPLE_RATE
    freqs = np.fft.rfftfreq(step, 1 / SAMPLE_RATE)
    for start in range(0, n - step, step):
        f0 = 196.0 * 2 ** (rng.integers(0, 12) / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
        source = 2 * ((np.cumsum(f0) / SAMPLE_RATE) % 1.0) - 1  # sawtooth: the glottis's harmonics
        formants = VOWELS[rng.integers(0, len(VOWELS))]
        envelope = sum(
            a / (1 + ((freqs - f) / 80) ** 2) for f, a in zip(formants, (1.0, 0.6, 0.3), strict=True)
        )
        syllable = np.fft.irfft(np.fft.rfft(source) * envelope, step)
        out[start : start + step] = syllable * np.minimum(1.0, t / 0.04) * np.minimum(1.0, (t[-1] - t) / 0.03)
    return 0.06 * out / out.std()


def music(rng: np.random.Generator) -> Float32Array:
    """Music, synthesized: a piano-like melody over chords and a bass line in C major at 112 bpm,
    a hi-hat on every beat, and a wordless sung line over it; about −18 dBFS."""
    n = TEN_MINUTES
    out = np.zeros(n)
    beat = int(SAMPLE_RATE * 60 / 112)
    scale = [261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25]
    chords = [(0, 2, 4), (5, 0, 2), (3, 5, 0), (4, 6, 1)]

    def note(freq: float, length: int, level: float) -> np.ndarray:
        t = np.arange(length) / SAMPLE_RATE
        tone = sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in range(1, 6))
        return level * tone * np.exp(-3.0 * t) * np.minimum(1.0, t * 200)

    for b, start in enumerate(range(0, n - 4 * beat, beat)):
        out[start : start + 2 * beat] += note(scale[rng.integers(0, 8)] * 2, 2 * beat, 0.05)
        if b % 4 == 0:
            for degree in chords[(b // 4) % 4]:
                out[start : start + 4 * beat] += note(scale[degree], 4 * beat, 0.025)
            out[start : start + 4 * beat] += note(scale[chords[(b // 4) % 4][0]] / 4, 4 * beat, 0.06)
        hat = 0.02 * rng.standard_normal(800) * np.exp(-np.arange(800) / 120)
        out[start : start + 800] += np.diff(hat, prepend=0.0)
    return (out + vocalise(rng, n, beat)).astype(np.float32)


@pytest.mark.parametrize("make", [quiet_room, room_noise, music], ids=["silence", "room-noise", "music"])
async def test_ten_minutes_without_speech_produce_no_final(tiny: WhisperModel, make) -> None:  # type: ignore[no-untyped-def]
    audio = make(np.random.default_rng(7))
    events = await play(Scheduler(tiny, Settings()), audio, frames_per_step=10)
    assert [e.text for e in events if isinstance(e, Final)] == []


@pytest.mark.parametrize("make", [quiet_room, room_noise, music], ids=["silence", "room-noise", "music"])
async def test_without_vad_the_model_itself_hears_no_words_in_them(tiny: WhisperModel, make) -> None:  # type: ignore[no-untyped-def]
    """With the VAD off (a client's choice) every second goes to Whisper, which hallucinates on
    silence and music ("Thank you.", "♪"): its own no-speech and hallucination rules must hold."""
    audio = make(np.random.default_rng(7))
    scheduler = Scheduler(tiny, Settings())
    events = await play(scheduler, audio, frames_per_step=50, options=StreamOptions(vad=False))
    assert scheduler.stats.batch_items > 0  # the model did read it
    assert [e.text for e in events if isinstance(e, Final)] == []


@pytest.mark.parametrize("frames_per_step", [1, 3, 6])
async def test_a_sentence_finalized_mid_utterance_is_not_finalized_again(
    tiny: WhisperModel, synth: Synth, frames_per_step: int
) -> None:
    """Past 8 s of unbroken speech, confirmed sentences go out as finals; when that leaves
    nothing unconfirmed, the utterance's own final must not read them again."""
    sentences = [PROSE[2], PROSE[3], PROSE[7]]
    audio = np.concatenate([GAP, *[synth(s) for s in sentences], GAP, GAP])
    events = await play(Scheduler(tiny, Settings()), audio, frames_per_step)
    text = " ".join(e.text for e in events if isinstance(e, Final))
    reference = " ".join(sentences)
    assert len(normalized_words(text)) <= len(normalized_words(reference)) + 2, text
    assert corpus_wer([(reference, text)]) <= 0.15, text

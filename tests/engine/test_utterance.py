"""One stream's utterance, driven by scripted VAD decisions and readings: no model, no audio.

What a client sees from it: when speech starts and ends, which words an interim shows and
which are stable, what a final says and when it needs a reading of its own."""

from __future__ import annotations

import numpy as np
import pytest

from voxindex.engine.events import Final, Flushed, Interim, SpeechEnded, SpeechStarted
from voxindex.engine.prompting import Prompting, StreamPrompt
from voxindex.engine.reading import Reading
from voxindex.engine.types import StreamOptions, Word
from voxindex.engine.utterance import Ending, Phase, Utterance
from voxindex.engine.vad import CHUNK, CHUNK_S
from voxindex.models.registry import Ct2Source, resolve
from voxindex.models.tokenizer import WhisperTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> WhisperTokenizer:
    source = resolve("tiny.en")
    assert isinstance(source, Ct2Source)
    return WhisperTokenizer.from_file(source.tokenizer_json)


def utterance(tokenizer: WhisperTokenizer, **options: object) -> Utterance:
    return Utterance(StreamOptions(**options), StreamPrompt(tokenizer))  # type: ignore[arg-type]


def hear(u: Utterance, prob: float, chunks: int, flush: bool = False) -> None:
    """``chunks`` VAD decisions of probability ``prob`` (32 ms each), interpreted."""
    u.hear(np.zeros(chunks * CHUNK, np.float32), np.full(chunks, prob, np.float32))
    u.interpret(flush=flush)


def words(*spoken: tuple[str, float]) -> list[Word]:
    return [Word(w, t, t + 0.3, 0.9) for w, t in spoken]


def events(u: Utterance) -> list[object]:
    return [e.event for e in u.take_events()]


def speak(tokenizer: WhisperTokenizer, **options: object) -> Utterance:
    """0.32 s of silence, then 1.28 s of speech: an utterance being heard."""
    u = utterance(tokenizer, **options)
    hear(u, 0.0, 10)
    hear(u, 0.9, 40)
    return u


def test_speech_starts_after_a_run_of_voice_and_interims_confirm_what_two_readings_agree_on(
    tokenizer: WhisperTokenizer,
) -> None:
    u = speak(tokenizer)
    assert u.phase == Phase.SPEAKING
    [started] = events(u)
    assert isinstance(started, SpeechStarted) and started.time == pytest.approx(10 * CHUNK_S, abs=1e-3)
    assert u.wants_interim(0.5)

    u.read(Reading(words(("Ten", 0.4), ("of", 0.8))), u.heard, final=False)
    [first] = events(u)
    assert isinstance(first, Interim) and (first.text, first.stable_text) == ("Ten of", "")
    u.read(Reading(words(("Ten", 0.4), ("of", 0.8), ("clubs", 1.2))), u.heard, final=False)
    [second] = events(u)
    assert isinstance(second, Interim) and (second.text, second.stable_text) == ("Ten of clubs", "Ten of")
    assert not u.wants_interim(0.5)  # the latest reading heard everything so far


def test_silence_ends_the_utterance_and_its_final_comes_from_a_reading_of_the_whole(
    tokenizer: WhisperTokenizer,
) -> None:
    u = speak(tokenizer, endpointing_ms=500)
    u.read(Reading(words(("Ten", 0.4), ("of", 0.8))), u.heard, final=False)
    u.read(Reading(words(("Ten", 0.4), ("of", 0.8))), u.heard, final=False)
    events(u)
    hear(u, 0.0, 20)  # 0.64 s of silence
    assert u.phase == Phase.ENDING and u.ending == Ending.ENDPOINT
    assert u.needs_final_reading  # the interims never heard the end
    _start, until = u.window()
    assert until == pytest.approx(u.speech_end + 0.3)  # just past the end of speech
    assert u.read(Reading(words(("Ten", 0.4), ("of", 0.8), ("clubs.", 1.2))), until, final=True)
    final, ended = events(u)
    assert isinstance(final, Final) and (final.text, final.reason) == ("Ten of clubs.", "endpoint")
    assert isinstance(ended, SpeechEnded) and ended.time == pytest.approx(50 * CHUNK_S, abs=1e-3)
    assert u.phase == Phase.QUIET and u.finals == 1
    assert u.prompt(Prompting()) != ()  # the next utterance is primed with what was said


def test_a_final_never_loses_what_the_interim_showed(tokenizer: WhisperTokenizer) -> None:
    """The final reading heard nothing (rejected): the confirmed words and the tail stand."""
    u = speak(tokenizer)
    u.read(Reading(words(("Seven", 0.4), ("of", 0.8))), u.heard, final=False)
    u.read(Reading(words(("Seven", 0.4), ("of", 0.8), ("hearts", 1.2))), u.heard, final=False)
    hear(u, 0.0, 20)
    events(u)
    u.read(Reading(rejected="silence"), u.window()[1], final=True)
    final = events(u)[0]
    assert isinstance(final, Final) and final.text == "Seven of hearts"


def test_a_reading_that_already_heard_the_end_is_the_final_without_another(
    tokenizer: WhisperTokenizer,
) -> None:
    u = speak(tokenizer)
    hear(u, 0.0, 5)  # a short pause: still speaking
    assert u.phase == Phase.SPEAKING
    u.read(Reading(words(("Go", 0.4), ("forward.", 0.9))), u.heard, final=False)
    hear(u, 0.0, 15)
    assert u.phase == Phase.ENDING and u.final_is_fresh and not u.needs_final_reading
    events(u)
    u.finalize()
    final, _ = events(u)
    assert isinstance(final, Final) and final.text == "Go forward."


def test_a_flush_ends_the_utterance_at_once_and_speech_goes_on(tokenizer: WhisperTokenizer) -> None:
    u = speak(tokenizer)
    hear(u, 0.9, 1, flush=True)
    assert u.phase == Phase.ENDING and u.ending == Ending.FLUSH
    assert not any(isinstance(e, Flushed) for e in events(u))  # not done before its final
    u.read(Reading(words(("Ten", 0.4))), u.window()[1], final=True)
    final, flushed = events(u)[-2:]
    assert isinstance(final, Final) and final.reason == "flush"
    assert isinstance(flushed, Flushed)  # after the final: a client may close what it flushed
    assert u.phase == Phase.SPEAKING  # the speaker has not stopped


def test_a_flush_with_nothing_being_said_is_done_at_once(tokenizer: WhisperTokenizer) -> None:
    u = utterance(tokenizer)
    hear(u, 0.0, 20, flush=True)
    [flushed] = events(u)
    assert isinstance(flushed, Flushed) and flushed.time == pytest.approx(20 * CHUNK_S, abs=1e-3)
    hear(u, 0.0, 5)
    assert events(u) == []  # once per flush


def test_quiet_audio_is_not_kept(tokenizer: WhisperTokenizer) -> None:
    u = utterance(tokenizer)
    hear(u, 0.0, 500)  # 16 s of silence
    assert u.phase == Phase.QUIET and events(u) == []
    assert u.audio.size <= 0.8 * 16000 + CHUNK  # the pre-roll only

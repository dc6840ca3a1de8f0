"""Turn-taking in the engine: the words' and the silence's evidence, the fusion, one stream's
turn driven by scripted VAD decisions, readings and acoustic verdicts (no model), and the real
Smart Turn model on real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.test_utterance import hear, utterance
from tests.turn_corpus import HUMAN, build
from voxindex.audio import decode_file
from voxindex.engine.events import Final, SpeechEnded, TurnEvent, TurnInfo
from voxindex.engine.prompting import Prompting
from voxindex.engine.reading import Reading
from voxindex.engine.turns.acoustic import SmartTurn, weights_path
from voxindex.engine.turns.fusion import end_of_turn_probability
from voxindex.engine.turns.lexical import lexical_logit
from voxindex.engine.turns.worker import acoustic_clip
from voxindex.engine.types import TurnOptions, Word
from voxindex.engine.utterance import Phase, Utterance
from voxindex.models.registry import Ct2Source, resolve
from voxindex.models.tokenizer import WhisperTokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def tokenizer() -> WhisperTokenizer:
    source = resolve("tiny.en")
    assert isinstance(source, Ct2Source)
    return WhisperTokenizer.from_file(source.tokenizer_json)


def said(text: str) -> list[Word]:
    return [Word(w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(text.split())]


# ---------------- the words ----------------
@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book a table for",  # a preposition
        "Unless to be rather cold-hearted and",  # a conjunction
        "He might even have been made in the",  # an article
        "My account number is...",  # Whisper's "speech stopped mid-thought"
        "Eight of spades, four of clubs,",  # a list going on
        "I was thinking that maybe we could.",  # a modal, closed or not
        "And Mr.",  # a title: a name follows
    ],
)
def test_a_sentence_that_cannot_end_there_says_the_turn_goes_on(text: str) -> None:
    assert lexical_logit(said(text), closing=0.9) < -2


def test_a_closed_sentence_counts_as_much_as_the_decoder_was_sure_of_its_mark() -> None:
    sure, unsure = lexical_logit(said("Go forward ten meters."), 0.9), lexical_logit(said("Go forward."), 0.3)
    assert sure > 1.5 and unsure < 0
    assert lexical_logit(said("What time does the train leave?"), 0.9) > sure  # a question hands over
    # "than he was." ends a sentence; after "is" / "was" a mark counts less than after a noun
    assert 0 < lexical_logit(said("respectable than he was."), 0.92) < sure
    assert lexical_logit(said("Go forward ten meters"), None) < 0  # no mark


def test_the_fused_probability_rises_with_silence_and_follows_the_evidence() -> None:
    closed, open_ = lexical_logit(said("That is all."), 0.9), lexical_logit(said("I want to"), None)
    for lexical in (closed, open_):
        ps = [end_of_turn_probability(0.5, lexical, s) for s in (0.1, 0.3, 0.6, 1.0, 2.0)]
        assert ps == sorted(ps) and ps[0] < ps[-1]
    assert end_of_turn_probability(0.9, closed, 0.1) >= 0.7  # said and sounded finished: at once
    assert end_of_turn_probability(0.9, open_, 1.2) < 0.7  # sounded finished, but "to": a hold
    assert end_of_turn_probability(0.1, closed, 0.1) < end_of_turn_probability(0.9, closed, 0.1)
    assert end_of_turn_probability(None, closed, 0.2) > 0.5  # no acoustic model: words and silence
    # the baselines benchmarks/turns.py measures beside it
    assert end_of_turn_probability(0.1, closed, 0.49, "silence") == 0.0
    assert end_of_turn_probability(0.1, closed, 0.5, "silence") == 1.0
    assert end_of_turn_probability(0.8, open_, 0.1, "acoustic") == 0.8


# ---------------- one stream's turn ----------------
EAGER = TurnOptions(eot_threshold=0.7, eager_threshold=0.3)


def turn_stream(tokenizer: WhisperTokenizer, options: TurnOptions = EAGER) -> Utterance:
    u = utterance(tokenizer, turns=options)
    hear(u, 0.0, 10)
    hear(u, 0.9, 40)  # speech from 0.32 s to 1.6 s
    return u


def pause_read(u: Utterance, text: str, closing: float | None, acoustic: float) -> None:
    """The pause's reading (of the turn up to now) and the acoustic model's verdict come in."""
    assert u.needs_pause_reading() and not u.wants_interim(0.0)
    u.read(Reading(said(text), closing=closing), u.heard, final=False)
    hear(u, 0.0, 3)  # 96 ms more of silence: the acoustic model hears the pause from 100 ms
    assert u.needs_acoustic
    speech_end, clip = acoustic_clip(u)
    assert clip.size > 0
    u.hear_acoustic(acoustic, speech_end)


def turn_events(u: Utterance) -> list[TurnInfo]:
    return [e.event for e in u.take_events() if isinstance(e.event, TurnInfo)]


def test_a_turn_starts_with_speech_and_ends_at_a_closed_sentence_with_its_reading(
    tokenizer: WhisperTokenizer,
) -> None:
    u = turn_stream(tokenizer)
    started = turn_events(u)
    assert started[0].event == TurnEvent.STARTED and started[0].index == 0
    assert all(t.event == TurnEvent.UPDATE for t in started[1:])  # every ~0.25 s of audio
    assert len(started) - 1 == pytest.approx(1.28 / 0.25, abs=1)
    hear(u, 0.0, 1)  # the first silent chunk: the turn is read up to it, ahead of interims
    pause_read(u, "Go forward ten meters.", 0.9, 0.95)
    # the pause's reading is the final: the turn ends without another model call
    assert u.final_is_fresh and not u.needs_final_reading
    u.finalize()
    emitted = [e.event for e in u.take_events()]
    kinds = [type(e).__name__ if not isinstance(e, TurnInfo) else e.event.value for e in emitted]
    assert kinds.index("EagerEndOfTurn") < kinds.index("Final") < kinds.index("EndOfTurn")
    eager, final, end = (next(e for e in emitted if f(e)) for f in _eager_final_end())
    assert final.text == eager.text == end.text == "Go forward ten meters."
    assert end.end_of_turn_probability >= 0.7 and end.index == 0 and final.reason == "end_of_turn"
    assert any(isinstance(e, SpeechEnded) for e in emitted) and u.phase == Phase.QUIET


def _eager_final_end() -> list[object]:
    return [
        lambda e: isinstance(e, TurnInfo) and e.event == TurnEvent.EAGER_END,
        lambda e: isinstance(e, Final),
        lambda e: isinstance(e, TurnInfo) and e.event == TurnEvent.END,
    ]


def test_a_pause_mid_sentence_holds_the_turn_and_speech_resumes_it(tokenizer: WhisperTokenizer) -> None:
    u = turn_stream(tokenizer)
    turn_events(u)
    hear(u, 0.0, 1)
    pause_read(u, "I'd like to book a table for", None, 0.9)  # sounded finished; the words say no
    hear(u, 0.0, 25)  # a 0.9 s pause in all
    assert u.phase == Phase.SPEAKING and not any(t.event == TurnEvent.END for t in turn_events(u))
    hear(u, 0.9, 20)  # the rest of the sentence
    assert u.turn is not None and u.turn.pause is None and u.turn.open and u.turn.index == 0


def test_an_eager_end_is_resumed_when_speech_goes_on_and_the_end_carries_the_whole_turn(
    tokenizer: WhisperTokenizer,
) -> None:
    u = turn_stream(tokenizer, TurnOptions(eot_threshold=0.95, eager_threshold=0.5))
    hear(u, 0.0, 1)
    pause_read(u, "Had he married a more amiable woman.", 0.6, 0.5)
    hear(u, 0.0, 10)  # silence grows: probably the end, not sure enough to end
    kinds = [t.event for t in turn_events(u)]
    assert TurnEvent.EAGER_END in kinds and TurnEvent.END not in kinds
    hear(u, 0.9, 30)  # the speaker goes on
    resumed = [t for t in turn_events(u) if t.event == TurnEvent.RESUMED]
    assert len(resumed) == 1 and resumed[0].text.startswith("Had he married")
    hear(u, 0.0, 1)
    pause_read(
        u, "Had he married a more amiable woman, he might have been made still more respectable.", 0.95, 0.99
    )
    hear(u, 0.0, 10)
    u.finalize()
    end = [t for t in turn_events(u) if t.event == TurnEvent.END]
    assert len(end) == 1 and end[0].text.endswith("still more respectable.") and end[0].index == 0


def test_an_eager_end_goes_on_the_words_while_the_end_waits_for_the_acoustic_model(
    tokenizer: WhisperTokenizer,
) -> None:
    """The reading is in before Smart Turn answers (it runs on a loaded second core): a closed
    sentence is eager at once, and the turn ends only once the voice is heard too."""
    u = turn_stream(tokenizer)
    turn_events(u)
    hear(u, 0.0, 1)
    u.read(Reading(said("Go forward ten meters."), closing=0.9), u.heard, final=False)
    hear(u, 0.0, 3)  # 100 ms of silence, no acoustic verdict yet
    kinds = [t.event for t in turn_events(u)]
    assert TurnEvent.EAGER_END in kinds and TurnEvent.END not in kinds and u.phase == Phase.SPEAKING
    speech_end, _ = acoustic_clip(u)
    u.hear_acoustic(0.95, speech_end)
    assert u.phase == Phase.ENDING and u.final_is_fresh
    u.finalize()
    [end] = [t for t in turn_events(u) if t.event == TurnEvent.END]
    assert end.text == "Go forward ten meters."


def test_a_turn_that_ended_primes_the_next_readings_as_a_closed_sentence(tokenizer: WhisperTokenizer) -> None:
    """Whisper follows its prompt's style: a turn read without punctuation is primed with a full
    stop, or the next turns would be read without punctuation too and never look finished. A
    pause inside a turn, and a stream without turns, are primed as read."""
    u = turn_stream(tokenizer, TurnOptions(eot_threshold=0.7))
    hear(u, 0.0, 1)
    pause_read(u, "Hello there", None, 0.5)
    hear(u, 0.9, 20)  # the voice comes back: the pause's words are a final of the turn
    assert tokenizer.decode(list(u.prompt(Prompting()))) == " Hello there"
    hear(u, 0.0, 1)
    pause_read(u, "go forward ten meters", None, 0.99)
    hear(u, 0.0, 40)  # a long silence ends the turn
    u.finalize()
    assert tokenizer.decode(list(u.prompt(Prompting()))) == " Hello there go forward ten meters."
    plain = utterance(tokenizer)
    hear(plain, 0.0, 10)
    hear(plain, 0.9, 40)
    plain.read(Reading(said("go forward ten meters")), plain.heard, final=False)
    hear(plain, 0.0, 20)
    plain.finalize()
    assert tokenizer.decode(list(plain.prompt(Prompting()))) == " go forward ten meters"


def test_no_eager_end_for_a_turn_with_no_words_and_the_timeout_ends_any_turn(
    tokenizer: WhisperTokenizer,
) -> None:
    u = turn_stream(tokenizer, TurnOptions(eot_threshold=1.0, eager_threshold=0.3, eot_timeout_s=1.0))
    hear(u, 0.0, 1)
    u.read(Reading(rejected="silence"), u.heard, final=False)  # a cough read as nothing
    hear(u, 0.0, 3)
    speech_end, _ = acoustic_clip(u)
    u.hear_acoustic(0.99, speech_end)
    hear(u, 0.0, 10)
    assert not any(t.event == TurnEvent.EAGER_END for t in turn_events(u))
    hear(u, 0.0, 20)  # past the 1 s timeout
    assert u.phase == Phase.ENDING
    u.finalize()
    [end] = [t for t in turn_events(u) if t.event == TurnEvent.END]
    assert end.words == [] and u.turn is not None and u.turn.index == 1


def test_a_flush_ends_the_turn_and_the_next_speech_is_the_next_turn(tokenizer: WhisperTokenizer) -> None:
    u = turn_stream(tokenizer)
    u.read(Reading(said("My account number is")), u.heard, final=False)
    hear(u, 0.9, 1, flush=True)  # ForceEndTurn mid-speech
    assert u.phase == Phase.ENDING
    u.read(Reading(said("My account number is four")), u.heard, final=True)
    [end] = [t for t in turn_events(u) if t.event == TurnEvent.END]
    assert end.text == "My account number is four" and end.index == 0
    hear(u, 0.9, 10)  # still talking: a new turn, from its own start
    [started] = [t for t in turn_events(u) if t.event == TurnEvent.STARTED]
    assert started.index == 1


def test_a_result_for_a_pause_that_is_over_is_ignored(tokenizer: WhisperTokenizer) -> None:
    u = turn_stream(tokenizer)
    hear(u, 0.0, 4)
    speech_end, _ = acoustic_clip(u)
    hear(u, 0.9, 10)  # voice again: that pause is over
    u.hear_acoustic(0.99, speech_end)
    assert u.turn is not None and u.turn.pause is None


def test_thresholds_change_mid_stream_and_the_server_keeps_deciding_what_decides(
    tokenizer: WhisperTokenizer,
) -> None:
    u = turn_stream(tokenizer)
    u.configure(TurnOptions(eot_threshold=1.0, eager_threshold=None, eot_timeout_s=3.0))
    assert u.turn is not None and u.turn.options.eot_threshold == 1.0 and u.turn.options.evidence == "fused"
    assert u.endpointer.endpointing_s == 3.0
    hear(u, 0.0, 1)
    pause_read(u, "Go forward ten meters.", 0.95, 0.99)
    hear(u, 0.0, 40)  # 1.3 s: the best evidence does not reach 1.0
    assert u.phase == Phase.SPEAKING


# ---------------- the acoustic model ----------------
@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    path = weights_path()
    if path is None:
        pytest.skip("Smart Turn's weights are not installed (pip install --no-deps pipecat-ai==1.14.0)")
    return SmartTurn(path, torch.device("cpu"))


def test_features_are_whisper_feature_extractors_for_an_8_second_window(smart_turn: SmartTurn) -> None:
    from transformers import WhisperFeatureExtractor

    clip = decode_file(FIXTURES / "goforward.wav")
    padded = np.pad(clip, (8 * 16000 - clip.size, 0))  # Smart Turn's clips end where speech stopped
    reference = WhisperFeatureExtractor(chunk_length=8)(
        padded, sampling_rate=16000, return_tensors="np", do_normalize=True
    ).input_features[0]
    assert np.abs(smart_turn.features([clip])[0] - reference).max() < 1e-3


def test_smart_turn_hears_a_finished_command_and_a_sentence_cut_off(smart_turn: SmartTurn) -> None:
    finished = decode_file(FIXTURES / "goforward.wav")
    amiable = build(next(s for s in HUMAN if s.name == "amiable"))
    cut = amiable.audio[: round(amiable.holds[0][0] * 16000) + 1600]  # "He might even have" + 0.1 s
    p_finished, p_cut = smart_turn([finished, cut])  # one batched call
    assert p_finished > 0.8 and p_cut < 0.2
    assert smart_turn([cut])[0] == pytest.approx(p_cut, abs=1e-4)  # a batch reads each alone


def test_reading_knows_how_sure_the_decoder_was_of_the_closing_mark(tiny: object) -> None:
    from voxindex.engine.executor import Executor
    from voxindex.engine.reading import Job

    executor = Executor(tiny, slots=2)  # type: ignore[arg-type]
    done = decode_file(FIXTURES / "goforward.wav")
    [reading] = executor.run([Job(audio=done, start=0.0)])
    assert reading.text.endswith(".") and reading.closing is not None and 0.5 < reading.closing <= 1.0


def test_a_turn_forced_to_end_in_a_read_pause_ends_with_that_reading_at_once(
    tokenizer: WhisperTokenizer,
) -> None:
    u = turn_stream(tokenizer, TurnOptions(eot_threshold=1.0))  # only the client ends turns
    hear(u, 0.0, 1)
    pause_read(u, "Go forward ten meters.", 0.9, 0.95)
    hear(u, 0.0, 3, flush=True)  # ForceEndTurn, 0.2 s into the pause
    assert u.phase == Phase.ENDING and u.final_is_fresh and not u.needs_final_reading
    u.finalize()
    [end] = [t for t in turn_events(u) if t.event == TurnEvent.END]
    assert end.text == "Go forward ten meters." and end.end == pytest.approx(1.6, abs=0.04)


def test_a_pause_the_voice_comes_back_after_is_a_final_and_the_turn_reads_on_from_it(
    tokenizer: WhisperTokenizer,
) -> None:
    u = turn_stream(tokenizer)
    hear(u, 0.0, 1)
    pause_read(u, "I'd like to book a table for", None, 0.9)
    hear(u, 0.0, 20)
    hear(u, 0.9, 30)  # "four people on Friday evening"
    finals = [e.event for e in u.take_events() if isinstance(e.event, Final)]
    assert [f.text for f in finals] == ["I'd like to book a table for"] and finals[0].reason == "pause"
    start, _ = u.window()
    assert start > 1.6  # the turn reads on from the pause, not from its start
    rest = [
        Word(w, start + 0.1 + i * 0.3, start + 0.35 + i * 0.3, 0.9)
        for i, w in enumerate("four people.".split())
    ]
    hear(u, 0.0, 1)
    u.read(Reading(rest, closing=0.9), u.heard, final=False)
    hear(u, 0.0, 3)
    speech_end, _ = acoustic_clip(u)
    u.hear_acoustic(0.95, speech_end)
    u.finalize()
    [end] = [t for t in turn_events(u) if t.event == TurnEvent.END]
    assert end.text == "I'd like to book a table for four people."

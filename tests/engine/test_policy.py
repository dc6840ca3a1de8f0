from __future__ import annotations

from voxindex.engine.policy import (
    agreed_prefix,
    compression_ratio,
    drop_repeated_tail,
    drop_restart,
    final_words,
    has_words,
    is_anomalous,
    is_hallucination,
    is_silence,
    last_sentence_end,
    repeats_phrase,
)
from voxindex.engine.types import Hypothesis, Word


def words(text: str) -> list[Word]:
    return [Word(w, i * 0.5, i * 0.5 + 0.4, 0.9) for i, w in enumerate(text.split())]


def test_local_agreement_counts_the_shared_prefix_ignoring_case_and_punctuation() -> None:
    assert agreed_prefix(words("Good morning everyone"), words("good morning, everyone and")) == 3
    assert agreed_prefix(words("the box was"), words("the fox was")) == 1
    assert agreed_prefix([], words("anything")) == 0
    assert agreed_prefix(words("one two three"), words("one two")) == 2


def test_silence_rule() -> None:
    assert is_silence(Hypothesis([1], [-2.0], no_speech_prob=0.7, language=None))
    assert not is_silence(Hypothesis([1], [-0.2], no_speech_prob=0.7, language=None))  # confident text wins
    assert is_silence(Hypothesis([1], [-0.2], no_speech_prob=0.95, language=None))
    assert not is_silence(Hypothesis([1], [-3.0], no_speech_prob=0.1, language=None))


def test_repetition_is_a_hallucination() -> None:
    loop = "thank you " * 20
    assert compression_ratio(loop) > 2.4
    assert is_hallucination(False, loop)
    assert is_hallucination(True, "short")
    assert not is_hallucination(False, "The juice of lemons makes fine punch.")


def test_phrase_repeats_and_loop_trimming() -> None:
    assert repeats_phrase("4 queen of clubs 4 queen of clubs")
    assert not repeats_phrase("five five")  # one word twice is ordinary speech
    assert not repeats_phrase("the cat sat on the mat")
    assert drop_repeated_tail([1, 2, 3, 1, 2, 3, 1, 2, 3]) == [1, 2, 3]
    assert drop_repeated_tail([5, 5]) == [5, 5]
    assert drop_repeated_tail([5, 5, 5, 5, 5]) == [5]
    assert drop_repeated_tail([9, 1, 2, 3]) == [9, 1, 2, 3]


def test_last_sentence_end() -> None:
    assert last_sentence_end(words("Hello there. How are")) == 2
    assert last_sentence_end(words("no end here")) == 0
    assert last_sentence_end(words("Done? Yes!")) == 2
    # a title or an initial is not a sentence's end: "Mr." alone was once finalized as one
    assert last_sentence_end(words("Mr. John Dashwood had")) == 0
    assert last_sentence_end(words("He met Dr. Smith and John F. Kennedy")) == 0
    assert last_sentence_end(words("It was John F. Kennedy. And")) == 5


def _words(text: str, start: float = 0.0, step: float = 0.4, confidence: float = 0.9) -> list[Word]:
    return [Word(w, start + i * step, start + (i + 1) * step, confidence) for i, w in enumerate(text.split())]


def test_the_final_is_the_whole_utterance_reading_unless_it_would_lose_words() -> None:
    confirmed, tail = _words("he was not an old-sposed"), _words("young", 2.0)
    reading = _words("he was not an ill disposed young man")
    assert final_words(confirmed, tail, reading, speech_end=3.0) == reading  # corrects the partials
    shorter = _words("he was not")  # fewer words than were confirmed: the interim stands
    assert final_words(confirmed, tail, shorter, speech_end=3.0) == confirmed + tail
    stopped = _words("he was not an old-sposed", step=0.2)  # its words end 2 s before the speech
    assert final_words(confirmed, _words("young man", 2.0), stopped, 3.0) == confirmed + _words(
        "young man", 2.0
    )
    assert final_words(confirmed, tail, None, speech_end=3.0) == confirmed + tail  # rejected: keep
    assert final_words([], _words("you"), None, speech_end=3.0) == []  # noise read once: nothing


def test_readings_without_words_or_with_anomalous_words_are_not_speech() -> None:
    assert not has_words(" . . . .") and has_words("5 5.")
    assert is_anomalous(_words("You", confidence=0.05))  # music
    assert is_anomalous(_words("so the", step=3.5))  # words stretched over seconds of noise
    assert not is_anomalous(_words("five five", step=0.05))  # fast, but heard with confidence
    assert not is_anomalous(_words("four queen of clubs", confidence=0.3))
    assert not is_anomalous([])


def test_a_reading_that_starts_over_is_cut_where_it_restarts() -> None:
    once = [11, 12, 13, 14, 15, 16, 17, 18]
    assert drop_restart([*once, 11, 12, 13, 14, 15, 16]) == once
    assert drop_restart(once) == once
    assert drop_restart([*once, 11, 12, 13, 99]) == [*once, 11, 12, 13, 99]  # too short to be a copy

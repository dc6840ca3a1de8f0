from __future__ import annotations

from voxindex.engine.align import Word
from voxindex.engine.decode import Hypothesis
from voxindex.engine.policy import (
    agreed_prefix,
    compression_ratio,
    drop_repeated_tail,
    is_hallucination,
    is_silence,
    last_sentence_end,
    repeats_phrase,
)


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

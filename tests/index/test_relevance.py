"""The relevance of a hit (index/relevance.py): the words and figures a query asks for, against
what a segment says; the embeddings' part is covered on real models in test_contract.py."""

from __future__ import annotations

import pytest

from voxindex.index.relevance import DEFAULT_MIN_SCORE, keyword_terms, query_terms, relevance, words


def test_words_compare_numbers_as_digits_and_drop_a_final_s() -> None:
    assert words("The train leaves every thirty minutes, 12% more") == [
        "the", "train", "leave", "every", "30", "minute", "12", "more",
    ]  # fmt: skip
    assert words("glass") == ["glass"] and words("bus") == ["bus"]  # no "s" taken from "ss" or short words
    assert query_terms("when does the airport train leave") == ["airport", "train", "leave"]
    assert query_terms("what is it") == ["what", "is", "it"]  # all stopwords: they are the query


def test_keyword_terms_ask_for_a_number_in_both_spellings() -> None:
    assert keyword_terms("go forward ten meters") == ["go", "forward", "ten", "10", "meters"]
    assert keyword_terms("account 4 5") == ["account", "4", "four", "5", "five"]
    assert keyword_terms("the") == ["the"]


@pytest.mark.parametrize("cosine", [0.3, 0.5, 0.7])
def test_the_very_words_score_above_a_paraphrase_of_the_same_meaning(cosine: float) -> None:
    text = "Today we review the budget for the new office."
    exact = relevance(query_terms("budget for the new office"), text, cosine)
    some = relevance(query_terms("budget for the workplace"), text, cosine)
    none = relevance(query_terms("money for the workplace"), text, cosine)
    assert 0.0 < none < some < exact < 1.0


def test_a_number_the_segment_does_not_say_is_another_fact() -> None:
    text = "Go forward 10 meters."
    assert relevance(query_terms("go forward ten meters"), text, 0.95) > 0.99
    other = relevance(query_terms("go backward five meters"), text, 0.76)  # MiniLM's cosine for it
    assert other < DEFAULT_MIN_SCORE
    # a figure asked of a segment that says none is not contradicted, only not confirmed
    unsure = relevance(query_terms("a train every 30 minutes"), "The train leaves every half hour.", 0.7)
    assert unsure > DEFAULT_MIN_SCORE


def test_meaning_alone_decides_where_no_word_is_shared() -> None:
    terms = query_terms("reimbursement deadline for trips")
    text = "Please submit your travel expenses before the end of the month."
    assert relevance(terms, text, 0.65) > DEFAULT_MIN_SCORE > relevance(terms, text, 0.35)


def test_a_segment_that_says_every_word_asked_for_is_a_hit_however_short_the_query() -> None:
    text = "Sales in the northern region grew by 12% compared with last year."
    for query in ("12", "twelve", "northern region"):
        assert relevance(query_terms(query), text, 0.1) > 0.85, query
    assert relevance(query_terms("southern region"), text, 0.1) < DEFAULT_MIN_SCORE

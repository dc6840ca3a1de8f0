"""How sure search is that a segment says what the query asks: one figure in [0, 1].

A transcript search answers "did anyone say X?", and a false hit is worse than none, so a hit's
``score`` is not a rank but a relevance a user can threshold, the same whichever mode found the
segment (keyword, vector or both) and comparable across queries. Three pieces of evidence:

- **meaning**: the cosine between the query's and the segment's MiniLM embeddings. Unrelated
  sentences sit below ~0.35, a paraphrase of what was said above ~0.5.
- **words**: the share of the query's words (stopwords aside) the segment says, after a light
  normalisation both sides share: lower case, numbers as digits ("ten" is "10"), a plural's or
  a verb's final "s" dropped ("leaves" is "leave"). The exact words count on their own, so a
  hit for the query's very words scores above a paraphrase of them, and a segment that says
  every word of the query is a hit however short the query ("12" has no meaning to compare).
- **figures**: a number the query asks for that the segment does not say, where the segment
  says other numbers, makes it another fact ("nine of diamonds" is not "8 of spades", "go
  backward five meters" not "go forward 10 meters"), however close the meaning.

They add as log-odds (``relevance``). ``DEFAULT_MIN_SCORE`` 0.5 is where the evidence for and
against is even: a query for something never said returns no hit. The weights were set on
benchmarks/search_quality.py (BENCHMARKS.md "Search quality" has the figures).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

DEFAULT_MIN_SCORE = 0.5
MEANING_MIDPOINT = 0.5  # the cosine at which the meaning alone is even evidence
MEANING_SLOPE = 10.0  # log-odds per unit of cosine
WORDS_WEIGHT = 2.0  # log-odds when the segment says every word of the query
ALL_WORDS_LOGIT = 2.0  # at least this when the segment says every word of the query
FIGURE_MISMATCH = 4.0  # log-odds against: the query's numbers are not the segment's

STOPWORDS = frozenset(
    """a an and are as at be but by do does did for from had has have he her his how i if in into is it
    its me my no not of on or our she so than that the their them then there these they this to too us
    was we were what when where which who why will with would you your""".split()
)
NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), start=3)}
DIGITS = {v: k for k, v in NUMBERS.items()}
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def words(text: str) -> list[str]:
    """``text``'s words as the score compares them: lower case, numbers as digits, no final "s"."""
    return [_normal(w) for w in _TOKEN.findall(text.lower())]


def _normal(word: str) -> str:
    word = NUMBERS.get(word, word).removesuffix("'s")
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss") and not word.isdigit():
        return word[:-1]
    return word


def _content_words(query: str) -> list[str]:
    """``query``'s words in lower case, stopwords aside (unless that is all it has)."""
    raw = _TOKEN.findall(query.lower())
    return [w for w in raw if w not in STOPWORDS] or raw


def query_terms(query: str) -> list[str]:
    """The words of ``query`` a segment should say, normalised as ``words`` does."""
    return list(dict.fromkeys(_normal(w) for w in _content_words(query)))


def keyword_terms(query: str) -> list[str]:
    """The terms a keyword index is asked for: the query's own words (stopwords aside), each
    number also in its other spelling ("ten" and "10"), so either finds what was said either way."""
    out: list[str] = []
    for w in _content_words(query):
        out += [w, *([NUMBERS[w]] if w in NUMBERS else []), *([DIGITS[w]] if w in DIGITS else [])]
    return list(dict.fromkeys(out))


def relevance(terms: Iterable[str], text: str, cosine: float) -> float:
    """How sure we are that a segment saying ``text`` answers a query of ``terms``
    (``query_terms``) whose embedding's cosine with the segment's is ``cosine``."""
    wanted = list(terms)
    said = set(words(text))
    share = sum(w in said for w in wanted) / len(wanted) if wanted else 0.0
    z = MEANING_SLOPE * (cosine - MEANING_MIDPOINT) + WORDS_WEIGHT * share
    if wanted and share == 1.0:  # it says every word asked for: a keyword hit on its own, however
        z = max(z, ALL_WORDS_LOGIT)  # short the query ("12", "Tuesday") and low its cosine
    figures = [w for w in wanted if w.isdigit()]
    if figures and not any(f in said for f in figures) and any(w.isdigit() for w in said):
        z -= FIGURE_MISMATCH
    return 1.0 / (1.0 + math.exp(-z))

"""What the words say about a turn's end: the log-odds that a reading's text is a finished turn.

A sentence the decoder closed (".", "?", "!") is evidence in proportion to the probability it
gave the closing mark, which costs nothing: it is that token's probability in the reading
(``Reading.closing``). Whisper closes almost everything it hears, so a mark given at 0.3 is
close to a guess; at 0.9 it is a sentence the decoder is sure of. A trailing "..." (Whisper's
way of hearing speech that stopped mid-thought), a comma, no mark at all, or a last word that
cannot end an English sentence ("and", "because", "the", "to", "might", "my", …) say the turn
goes on, whatever mark follows them; after "is", "was", "had" … a closing mark counts for
less. A figure being read ("4 5 7", no mark) reads as unclosed: lists pause between items.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxindex.engine.types import Word

# words after which an English sentence goes on: articles, conjunctions, prepositions,
# auxiliaries and modals, possessives, subject pronouns, intensifiers, titles
GOES_ON = frozenset(
    """
    a an the and but or nor so because if unless than that which who whose whom when while
    where whereas although though since until as of to for in on at by with from into onto upon
    about like between through during without within over under after before against among
    my your his her its our their these those be been being will would shall should can could
    may might must i we you he she they very most rather quite really just such every each
    either neither let's i'm we're you're they're he's she's it's there's that's i've we've
    i'd we'd i'll we'll um uh er erm mr mrs ms dr
    """.split()
)
# finite forms of be, have, do: often a sentence goes on after them ("my number is …"), but
# "than he was." ends one; a closing mark after them counts, less
MAY_END = frozenset("is are was were am has have had do does did".split())
MAY_END_LOGIT = -2.0
TRAILING = ("...", "…", ",", ";", ":", "-", "—")
CLOSING = (".", "?", "!")

GOES_ON_LOGIT = -3.5  # a last word that cannot end a sentence
TRAILING_LOGIT = -3.0  # "...", a comma, a dash: the decoder heard speech that stopped mid-thought
UNCLOSED_LOGIT = -2.5  # no mark at all
CLOSED_SLOPE = 6.0  # log-odds per unit of the closing mark's probability …
CLOSED_MIDPOINT = 0.5  # … around this probability
QUESTION_LOGIT = 1.0  # a question is handed over to the listener


def lexical_logit(words: Sequence[Word], closing: float | None) -> float:
    """The log-odds that ``words`` (the turn so far, as our reading heard it) end the turn;
    ``closing`` is the probability the decoder gave the closing mark, None if none closed it."""
    if not words:
        return UNCLOSED_LOGIT  # nothing said: a noise, a breath; the silence decides
    last = words[-1].word.strip()
    bare = last.strip(".,!?;:…\"'()-—").lower()
    if bare in GOES_ON:
        return GOES_ON_LOGIT
    if last.endswith(TRAILING):
        return TRAILING_LOGIT
    if not last.endswith(CLOSING) or closing is None:
        return UNCLOSED_LOGIT
    logit = CLOSED_SLOPE * (closing - CLOSED_MIDPOINT)
    if bare in MAY_END:
        logit += MAY_END_LOGIT
    return logit + QUESTION_LOGIT if last.endswith("?") else logit

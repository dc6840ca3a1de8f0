"""Commit policy: which words are stable (LocalAgreement-2) and which hypotheses to distrust.

Pure functions over words and hypotheses, so each rule is tested directly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from voxindex.engine.types import Hypothesis, Word

NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
# Whisper's own no-speech head is trustworthy when it is this sure, whatever the text's logprob.
CONFIDENT_NO_SPEECH = 0.9
COMPRESSION_RATIO_THRESHOLD = 2.4
SENTENCE_END = (".", "?", "!", "。", "？", "！")
# a full stop that ends a title or an initial, not a sentence ("Mr. John Dashwood", "John F.")
ABBREVIATIONS = frozenset("mr. mrs. ms. dr. st. jr. sr. prof. mt. vs.".split())


def is_silence(hyp: Hypothesis) -> bool:
    """OpenAI's no-speech rule, plus a confident no-speech head on its own."""
    if hyp.no_speech_prob > CONFIDENT_NO_SPEECH:
        return True
    return hyp.no_speech_prob > NO_SPEECH_THRESHOLD and hyp.avg_logprob < LOGPROB_THRESHOLD


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def is_hallucination(looped: bool, text: str) -> bool:
    """A repetition loop or text that compresses like one: Whisper's classic failure on noise."""
    return looped or (len(text) > 20 and compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD)


def has_words(text: str) -> bool:
    """Whether a reading said anything: " . . . ." on a quiet room is Whisper's silence, not text."""
    return any(c.isalnum() for c in text)


def is_anomalous(words: Sequence[Word]) -> bool:
    """OpenAI's word-anomaly rule (``hallucination_silence_threshold`` in whisper/transcribe.py),
    without its short-word term (fast digits, "five five", are short and real): words the model
    barely believes (probability < 0.15) or stretched past 2 s score; a reading is a
    hallucination when its first eight words score 3 or more, or every one of them does ("You"
    on music, "The" on a fan)."""
    first = [w for w in words if has_words(w.word)][:8]
    score = sum((w.confidence < 0.15) + max(0.0, w.end - w.start - 2.0) for w in first)
    return bool(first) and (score >= 3 or score + 0.01 >= len(first))


def drop_repeated_tail(tokens: Sequence[int]) -> list[int]:
    """Cut a decoding loop back to its first pass: "ten of clubs ten of clubs ten of clubs" →
    "ten of clubs". Phrases of two or more tokens keep one copy; a single token repeated
    four or more times keeps one (a speaker does say "five five")."""
    out = list(tokens)
    changed = True
    while changed:
        changed = False
        for n in range(1, len(out) // 2 + 1):
            copies = 1
            while (
                len(out) >= n * (copies + 1)
                and out[len(out) - n * (copies + 1) : len(out) - n * copies] == out[-n:]
            ):
                copies += 1
            if copies >= (4 if n == 1 else 2):
                out = out[: len(out) - n * (copies - 1)]
                changed = True
                break
    return out


RESTART_TOKENS = 5


def drop_restart(tokens: Sequence[int]) -> list[int]:
    """Cut a reading where it starts over: "Sales … last year. Sales in the Northern Region grew
    by … last" → "Sales … last year." Whisper does this on trailing silence with no prompt; the
    second pass is a copy, never new speech (its first ``RESTART_TOKENS`` tokens repeat the
    reading's own opening)."""
    head = list(tokens[:RESTART_TOKENS])
    if len(head) < RESTART_TOKENS:
        return list(tokens)
    for i in range(RESTART_TOKENS, len(tokens) - RESTART_TOKENS + 1):
        if list(tokens[i : i + RESTART_TOKENS]) == head:
            return list(tokens[:i])
    return list(tokens)


def repeats_phrase(text: str) -> bool:
    """Whether the text ends with a phrase of two or more words said twice in a row."""
    words = [_norm(w) for w in text.split()]
    return any(words[-n:] == words[-2 * n : -n] for n in range(2, len(words) // 2 + 1))


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def agreed_prefix(previous: Sequence[Word], current: Sequence[Word]) -> int:
    """LocalAgreement-2: how many leading words two consecutive hypotheses share (ignoring case
    and punctuation). Those words are stable: a third reading rarely changes them."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if _norm(a.word) != _norm(b.word) or not _norm(b.word):
            break
        n += 1
    return n


def past_confirmed(confirmed: list[Word], words: list[Word]) -> list[Word]:
    """The part of a new reading after the words already confirmed (by time, then by overlap)."""
    if not confirmed:
        return words
    cut = confirmed[-1].end - 0.1
    rest = [w for w in words if w.start >= cut]
    # the reading may repeat the last confirmed words with slightly earlier times
    for n in range(min(5, len(confirmed), len(rest)), 0, -1):
        if agreed_prefix(confirmed[-n:], rest[:n]) == n:
            return rest[n:]
    return rest


TRUNCATED_READING_S = 1.0  # a reading whose last word starts this long before speech ends stopped early


def final_words(
    confirmed: list[Word], tail: list[Word], reading: list[Word] | None, speech_end: float
) -> list[Word]:
    """The words of a final, given the last interim (``confirmed`` + ``tail``), the latest
    reading of the whole utterance (``None`` when that reading was rejected) and where speech
    ended.

    The reading heard the utterance whole, as offline decoding does, so it is the final: the
    words of partial readings are an interim's best guess, and a word two partial readings
    agreed on while it was still being spoken ("old-sposed" for "ill disposed") is corrected
    here. But a final never loses what the interim showed: a reading with fewer words than
    were confirmed, or one that stopped early (its words end well before the speech did),
    gives way to the interim. A rejected reading with nothing confirmed (noise read as words
    once) gives no final at all.
    """
    shown = confirmed + tail
    if reading is None:
        return shown if confirmed else []
    if len(reading) < len(confirmed):
        return shown
    stopped_early = not reading or reading[-1].start < speech_end - TRUNCATED_READING_S
    return shown if stopped_early and len(shown) > len(reading) else reading


def ends_sentence(word: str) -> bool:
    """Whether ``word`` ends a sentence: a closing mark that is not an abbreviation's."""
    word = word.strip()
    if not word.endswith(SENTENCE_END):
        return False
    bare = word.lstrip("\"'(").lower()
    initial = len(bare) == 2 and bare[0].isalpha() and bare[1] == "."
    return bare not in ABBREVIATIONS and not initial


def last_sentence_end(words: Sequence[Word]) -> int:
    """Index just past the last word that ends a sentence, or 0."""
    for i in range(len(words), 0, -1):
        if ends_sentence(words[i - 1].word):
            return i
    return 0


def join_words(words: Sequence[Word]) -> str:
    return " ".join(w.word for w in words).strip()

"""What a stream's readings are primed with: key terms, conversation context, its own past text.

Whisper conditions on text given after ``<|startofprev|>`` as if it had been said just before
the audio (faster-whisper's ``hotwords``, OpenAI's ``prompt``). A stream's prompt is, in order:

- its **key terms**, as a comma-separated list ("Siobhan Nguyen, Grafana.") — names and domain
  terms the caller expects (BENCHMARKS.md, "Key terms and context");
- its **conversation context**: the newest conversation items (an agent's last reply, the user's
  last turn) pushed by the client, oldest first;
- the stream's **own finals** since the key terms or context last changed (past text that
  misspelt a new term would teach Whisper the misspelling: it copies its prompt's spellings).

It is bounded by Whisper's previous-text budget (223 tokens): key terms take at most
``KEYTERM_TOKENS`` (whole terms, in the caller's order), context and past text share the rest,
newest kept. The prompt is only ever conditioning: a reading that echoes it back
(``echoes_prompt``) is read again without it (executor), so it never leaks into a transcript.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voxindex.engine.policy import SENTENCE_END
from voxindex.errors import InvalidRequestError
from voxindex.models.tokenizer import WhisperTokenizer

PROMPT_TOKENS = 223  # Whisper's previous-text budget (half the decoder context)
KEYTERM_TOKENS = 120  # key terms never crowd out all context
MAX_KEYTERMS = 100
MAX_KEYTERM_CHARS = 100
MAX_CONTEXT_ITEMS = 8  # conversation items kept per stream, newest
MAX_CONTEXT_CHARS = 2000  # per item; longer ones keep their end (the words nearest the next turn)
ECHO_WORDS = 8  # a reading repeating this many context words in a row is an echo of the prompt


@dataclass(frozen=True)
class Prompting:
    """A stream's key terms and conversation context (replaced whole, never mutated)."""

    keyterms: tuple[str, ...] = ()
    context: tuple[str, ...] = ()  # conversation items, oldest first
    # bumped by every change: the stream's own past text restarts there (the context holds the
    # turns before; and past text that misspelt a new key term would teach the misspelling)
    epoch: int = 0

    def with_keyterms(self, terms: Iterable[str]) -> Prompting:
        return Prompting(tuple(terms), self.context, self.epoch + 1)

    def with_context(self, item: str) -> Prompting:
        items = (*self.context, item[-MAX_CONTEXT_CHARS:])[-MAX_CONTEXT_ITEMS:]
        return Prompting(self.keyterms, items, self.epoch + 1)


@dataclass(frozen=True)
class PromptUpdate:
    """A client's control message: new key terms (replacing the old) or a conversation item."""

    keyterms: tuple[str, ...] | None = None
    context: str | None = None


def keyterms(raw: Iterable[object], field: str = "keyterms") -> tuple[str, ...]:
    """Validate key terms from a client: strings of 1..100 characters, at most 100 of them;
    duplicates dropped (first kept). InvalidRequestError names the bad one."""
    terms: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise InvalidRequestError(f"{field} must be strings, got {type(item).__name__}")
        term = " ".join(item.split())
        if not term:
            continue
        if len(term) > MAX_KEYTERM_CHARS:
            raise InvalidRequestError(f"{field}: {term[:30]!r}… is over {MAX_KEYTERM_CHARS} characters")
        if term not in terms:
            terms.append(term)
    if len(terms) > MAX_KEYTERMS:
        raise InvalidRequestError(f"{field}: at most {MAX_KEYTERMS} terms, got {len(terms)}")
    return tuple(terms)


def context_item(raw: object, field: str = "text") -> str:
    """Validate one conversation item's text (any length: its end is kept)."""
    if not isinstance(raw, str):
        raise InvalidRequestError(f"{field} must be a string, got {type(raw).__name__}")
    return " ".join(raw.split())


def keyterm_text(terms: Sequence[str]) -> str:
    return ", ".join(terms) + "." if terms else ""


class PromptBuilder:
    """Token prompts for one stream, the key-term and context part encoded once per change."""

    def __init__(self, tokenizer: WhisperTokenizer) -> None:
        self.tok = tokenizer
        self._for: Prompting | None = None
        self._terms: list[int] = []
        self._context: list[int] = []

    def __call__(self, prompting: Prompting, own: Sequence[int]) -> tuple[int, ...]:
        if prompting is not self._for:
            self._for = prompting
            self._terms = self._fit_terms(prompting.keyterms)
            text = " ".join(prompting.context)
            self._context = self.tok.encode(" " + text) if text else []
        rest = (self._context + list(own))[-(PROMPT_TOKENS - len(self._terms)) :]
        return tuple(self._terms + rest) if self._terms or rest else ()

    def _fit_terms(self, terms: Sequence[str]) -> list[int]:
        """Whole terms in the caller's order, as many as fit in KEYTERM_TOKENS."""
        kept: list[str] = []
        for term in terms:
            if len(self.tok.encode(" " + keyterm_text([*kept, term]))) > KEYTERM_TOKENS:
                break
            kept.append(term)
        return self.tok.encode(" " + keyterm_text(kept)) if kept else []


class StreamPrompt:
    """One stream's token prompt: its key terms and context (``Prompting``, set by its client),
    then its own finals since either last changed."""

    def __init__(self, tokenizer: WhisperTokenizer) -> None:
        self.tok = tokenizer
        self._builder = PromptBuilder(tokenizer)
        self._own: deque[int] = deque(maxlen=PROMPT_TOKENS)
        self._epoch = 0  # the ``Prompting.epoch`` the own past text follows

    def said(self, text: str, turn_ended: bool = False) -> None:
        """A final's text: the readings after it are primed with it. ``turn_ended``: the text
        ends a speaker's turn, so a sentence: it is primed closed (a full stop where the reading
        left it open), because Whisper follows its prompt's style and a prompt without
        punctuation makes readings without it, whose ends then look unfinished
        (turns/lexical.py)."""
        if turn_ended and text and not text.endswith(SENTENCE_END):
            text += "."
        self._own.extend(self.tok.encode(" " + text))

    def __call__(self, prompting: Prompting) -> tuple[int, ...]:
        if prompting.epoch != self._epoch:  # key terms or context changed: past text restarts
            self._epoch = prompting.epoch
            self._own.clear()
        return self._builder(prompting, self._own)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def echoes_prompt(text: str, prompting: Prompting) -> bool:
    """Whether a reading repeats its prompt rather than the audio: two key terms in a row, in
    the prompt's order (the list itself), or ECHO_WORDS consecutive words of the context."""
    said = " " + " ".join(_words(text)) + " "
    terms = [" ".join(_words(t)) for t in prompting.keyterms]
    for a, b in itertools.pairwise(terms):
        if a and b and f" {a} {b} " in said:
            return True
    heard = _words(text)
    context = " " + " ".join(_words(" ".join(prompting.context))) + " "
    return any(
        " " + " ".join(heard[i : i + ECHO_WORDS]) + " " in context for i in range(len(heard) - ECHO_WORDS + 1)
    )

"""The prompt a stream's readings are primed with (engine/prompting.py), and the echo guard."""

from __future__ import annotations

import pytest

from tests.conftest import Synth
from voxindex.engine.prompting import (
    KEYTERM_TOKENS,
    MAX_CONTEXT_ITEMS,
    PROMPT_TOKENS,
    PromptBuilder,
    Prompting,
    echoes_prompt,
    keyterms,
)
from voxindex.errors import InvalidRequestError
from voxindex.models.whisper import WhisperModel


def test_key_terms_come_first_then_context_then_own_text(tiny: WhisperModel) -> None:
    tok = tiny.tokenizer
    build = PromptBuilder(tok)
    own = tok.encode(" I said this.")
    p = Prompting(("Siobhan Nguyen", "Grafana")).with_context("Which dashboard?")
    assert tok.decode(build(p, own)) == " Siobhan Nguyen, Grafana. Which dashboard? I said this."
    assert build(Prompting(), []) == ()


def test_the_prompt_fits_whispers_budget_keeping_whole_terms_and_the_newest_text(
    tiny: WhisperModel,
) -> None:
    tok = tiny.tokenizer
    build = PromptBuilder(tok)
    terms = tuple(f"Term{n}" for n in range(100))
    own = tok.encode(" old words" * 100 + " the newest words")
    prompt = build(Prompting(terms), own)
    text = tok.decode(prompt)
    assert len(prompt) <= PROMPT_TOKENS
    assert len(tok.encode(text[: text.index(".") + 1])) <= KEYTERM_TOKENS
    assert text.startswith(" Term0, Term1,") and "." in text  # whole terms, in order, list closed
    assert "Term99" not in text  # the ones that did not fit are left out, never cut
    assert text.endswith("the newest words")


def test_context_keeps_the_newest_items() -> None:
    p = Prompting()
    for n in range(MAX_CONTEXT_ITEMS + 3):
        p = p.with_context(f"item {n}")
    assert p.context[0] == "item 3" and p.context[-1] == f"item {MAX_CONTEXT_ITEMS + 2}"
    assert p.epoch == MAX_CONTEXT_ITEMS + 3


def test_key_terms_are_validated() -> None:
    assert keyterms([" Siobhan   Nguyen ", "Grafana", "Grafana", ""]) == ("Siobhan Nguyen", "Grafana")
    with pytest.raises(InvalidRequestError, match="strings"):
        keyterms(["ok", 3])
    with pytest.raises(InvalidRequestError, match="characters"):
        keyterms(["x" * 101])
    with pytest.raises(InvalidRequestError, match="at most 100"):
        keyterms([f"t{n}" for n in range(101)])


def test_echoes_of_the_prompt_are_recognised() -> None:
    p = Prompting(("Siobhan Nguyen", "Grafana", "Tailscale")).with_context(
        "Your order ships on Tuesday from the Denver warehouse by courier."
    )
    assert echoes_prompt("Siobhan Nguyen, Grafana, Tailscale.", p)  # the list itself
    assert echoes_prompt("ships on Tuesday from the Denver warehouse by courier", p)
    assert not echoes_prompt("Forward it to Siobhan Nguyen and check Grafana.", p)
    assert not echoes_prompt("Tuesday is fine, the Denver one.", p)


def test_a_reading_that_echoes_its_key_terms_is_read_again_without_them(
    tiny: WhisperModel, synth: Synth
) -> None:
    """The prompt-retry rule holds for key terms: a prompted reading that is just the list is
    judged an echo and read again unprompted (here the speaker did say the list, and the price
    is the unprimed spelling; an echo on noise would be gone)."""
    import numpy as np

    from voxindex.engine.executor import Executor
    from voxindex.engine.reading import Job

    audio = np.concatenate(
        [np.zeros(8000, np.float32), synth("Grafana, Tailscale."), np.zeros(8000, np.float32)]
    )
    p = Prompting(("Grafana", "Tailscale"))
    prompt = PromptBuilder(tiny.tokenizer)(p, [])
    executor = Executor(tiny, slots=2)
    unprompted, primed_only, guarded = executor.run(
        [Job(audio, 0.0), Job(audio, 0.0, prompt), Job(audio, 0.0, prompt, prompting=p)]
    )
    assert echoes_prompt(primed_only.text, p), primed_only.text  # primed, it is the list itself
    # read again unprompted: the unprimed spelling (a retry decodes in another batch than the
    # first unprompted reading, so int8 numerics may move a letter: compare the echo, not text)
    assert not echoes_prompt(unprompted.text, p), unprompted.text
    assert guarded.words and not echoes_prompt(guarded.text, p), guarded.text

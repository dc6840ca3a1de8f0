"""One end-of-turn probability from the acoustic, lexical and silence evidence of a pause.

A logistic model: each kind of evidence adds its log-odds, the silence so far adds log-odds in
proportion to its length, so every pause ends a turn once it lasts long enough and a closed
sentence said with a falling voice ends it at once. The weights are set by hand against the
project's turn corpus (benchmarks/turns.py; BENCHMARKS.md "Turn-taking" has the figures and
the reasons); the acoustic model, trained on conversational speech, is trusted less than the
words because it misjudges read and unfamiliar speech in both directions.
"""

from __future__ import annotations

import math

BIAS = 0.0
ACOUSTIC_WEIGHT = 0.3  # per unit of Smart Turn's log-odds
SILENCE_LOGIT_PER_S = 2.0  # a pause this much more likely to be an end per second it lasts
CLAMP = 0.999  # acoustic probabilities are clamped away from 0 and 1 (their log-odds are finite)


SILENCE_ENDPOINT_S = 0.5  # "silence" evidence: today's endpointing (``endpointing_ms`` 500)


def end_of_turn_probability(
    acoustic: float | None, lexical: float, silence_s: float, evidence: str = "fused"
) -> float:
    """``acoustic``: Smart Turn's probability (None: not installed); ``lexical``: the words'
    log-odds (lexical.lexical_logit); ``silence_s``: how long the pause has lasted. ``evidence``
    "acoustic" or "silence" use that alone (the baselines of benchmarks/turns.py)."""
    if evidence == "silence":
        return 1.0 if silence_s >= SILENCE_ENDPOINT_S else 0.0
    if evidence == "acoustic":
        return 0.5 if acoustic is None else acoustic
    z = BIAS + lexical + SILENCE_LOGIT_PER_S * silence_s
    if acoustic is not None:
        p = min(max(acoustic, 1 - CLAMP), CLAMP)
        z += ACOUSTIC_WEIGHT * math.log(p / (1 - p))
    return 1 / (1 + math.exp(-z))

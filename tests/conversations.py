"""Conversations of distinct real speakers, for speaker-label tests and benchmarks/speakers.py.

Voices: the LibriVox reader, the PocketSphinx cards reader and the PocketSphinx command speaker
(``tests/fixtures``, three different people), and the Piper voice (synthetic, at most one
speaker of a conversation). A conversation alternates turns (one recording each, 1-8 s) with
pauses drawn from 0.2-1.0 s, so some pauses are too short for an endpoint and a final holds
two speakers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file

FIXTURES = Path(__file__).parent / "fixtures"
PIPER_LINES = [
    "The quarterly report is due on Friday afternoon.",
    "Please send the invoice to the accounting team before noon.",
    "I think we should move the meeting to next week.",
    "That sounds right to me, go ahead and book it.",
    "We shipped the new release to every customer yesterday.",
]


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int  # index into the conversation's voices


def voices(synth: object | None = None) -> dict[str, list[Float32Array]]:
    """Each voice's recordings; ``synth`` (the Piper fixture) adds the "piper" voice."""
    out = {
        "librivox": [decode_file(p) for p in sorted((FIXTURES / "librivox").glob("*.wav"))],
        "cards": [decode_file(p) for p in sorted(FIXTURES.glob("cards-*.wav"))],
        "command": [decode_file(FIXTURES / "goforward.wav")],
    }
    if synth is not None:
        out["piper"] = [synth(line) for line in PIPER_LINES]  # type: ignore[operator]
    return out


def conversation(
    clips: dict[str, list[Float32Array]],
    names: list[str],
    turns: int,
    seed: int = 0,
    pause: tuple[float, float] = (0.2, 1.0),
) -> tuple[Float32Array, list[Turn]]:
    """``turns`` turns among ``names`` (never the same voice twice running), each one recording
    of that voice, with pauses in ``pause``; 0.5 s of silence before and 1.5 s after."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(SAMPLE_RATE // 2, np.float32)]
    truth: list[Turn] = []
    t, previous = 0.5, -1
    for i in range(turns):
        choices = [k for k in range(len(names)) if k != previous] if i else [0]
        speaker = int(rng.choice(choices))
        previous = speaker
        voice = clips[names[speaker]]
        clip = voice[int(rng.integers(len(voice)))]
        parts.append(clip)
        truth.append(Turn(t, t + clip.size / SAMPLE_RATE, speaker))
        t += clip.size / SAMPLE_RATE
        gap = float(rng.uniform(*pause))
        parts.append(np.zeros(round(gap * SAMPLE_RATE), np.float32))
        t += round(gap * SAMPLE_RATE) / SAMPLE_RATE
    parts.append(np.zeros(SAMPLE_RATE * 3 // 2, np.float32))
    return np.concatenate(parts), truth


def monologue(clips: list[Float32Array], seconds: float, seed: int = 0) -> Float32Array:
    """One voice for ``seconds``: its recordings in shuffled rounds with pauses of 0.2-1.0 s."""
    rng = np.random.default_rng(seed)
    parts: list[Float32Array] = [np.zeros(SAMPLE_RATE // 2, np.float32)]
    total = 0.5
    while total < seconds:
        for k in rng.permutation(len(clips)):
            gap = np.zeros(round(float(rng.uniform(0.2, 1.0)) * SAMPLE_RATE), np.float32)
            parts += [clips[int(k)], gap]
            total += (clips[int(k)].size + gap.size) / SAMPLE_RATE
    parts.append(np.zeros(SAMPLE_RATE * 3 // 2, np.float32))
    return np.concatenate(parts)


def speaker_of(turns: list[Turn], start: float, end: float) -> int | None:
    """The true speaker of a word: the turn it overlaps most (None if it overlaps no turn)."""
    best, overlap = None, 0.0
    for turn in turns:
        o = min(end, turn.end) - max(start, turn.start)
        if o > overlap:
            best, overlap = turn.speaker, o
    return best


def attribution(pairs: list[tuple[int, int]]) -> float:
    """Share of (true, labelled) word pairs right under the best one-to-one label mapping."""
    from itertools import permutations

    if not pairs:
        return 0.0
    truths = sorted({t for t, _ in pairs})
    labels = sorted({h for _, h in pairs})
    slots = labels + [-1] * max(0, len(truths) - len(labels))
    best = 0
    for perm in permutations(slots, len(truths)):
        mapping = dict(zip(perm, truths, strict=True))
        best = max(best, sum(mapping.get(h) == t for t, h in pairs))
    return best / len(pairs)

"""Turns of speech for turn-taking tests and benchmarks/turns.py: real human recordings
(LibriVox prose, the PocketSphinx cards and command), some cut where the sentence is plainly
unfinished with a real-length pause (0.7–1.2 s) put in, and Piper dialogue for variety (a
sentence said up to "for" or "is", a pause, then the rest).

The truth is measured on the audio, not told by our VAD (``measure``): ``holds`` are the
pauses of 100 ms or more inside a turn, ``end`` is where its last loud frame ends.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file

FIXTURES = Path(__file__).parent / "fixtures"
LIBRIVOX = FIXTURES / "librivox" / "sense_and_sensibility_01_austen_64kb-{}.wav"
FRAME = SAMPLE_RATE // 100
MIN_HOLD_S = 0.1


@dataclass(frozen=True)
class Spec:
    """A turn: a recording cut at ``cuts`` (seconds) with ``pauses`` of silence put in."""

    name: str
    text: str
    source: str  # a fixture path, or "piper:" + the parts' texts joined by "|"
    cuts: tuple[float, ...] = ()
    pauses: tuple[float, ...] = ()


# cut points are quiet 10 ms frames between the words named (checked: each part read alone
# by Whisper base gives the words on either side)
HUMAN = [
    Spec(
        "dashwood",
        "and mister john dashwood had then leisure to consider how much there might be prudently "
        "in his power to do for them",
        str(LIBRIVOX).format("0870"),
        (2.23, 5.05),  # "had then | leisure", "might be | prudently"
        (0.9, 0.7),
    ),
    Spec(
        "unless",
        "unless to be rather cold hearted and rather selfish is to be ill disposed",
        str(LIBRIVOX).format("0890"),
        (2.18,),  # "cold hearted | and rather"
        (1.0,),
    ),
    Spec(
        "married",
        "had he married a more amiable woman he might have been made still more respectable than he was",
        str(LIBRIVOX).format("0920"),
        (2.54,),  # "woman | he might"
        (0.8,),
    ),
    Spec(
        "amiable",
        "he might even have been made amiable himself",
        str(LIBRIVOX).format("0930"),
        (1.1,),  # "even have | been made"
        (1.2,),
    ),
    Spec("young man", "he was not an ill disposed young man", str(LIBRIVOX).format("0880")),
    Spec("cards", "eight of spades four of clubs seven of hearts", str(FIXTURES / "cards-005.wav")),
    Spec("forward", "go forward ten meters", str(FIXTURES / "goforward.wav")),
    Spec("ten of clubs", "ten of clubs", str(FIXTURES / "cards-001.wav")),
]
PIPER = [
    Spec(
        "table",
        "i'd like to book a table for four people on friday evening",
        "piper:I'd like to book a table for|four people on Friday evening.",
        pauses=(0.8,),
    ),
    Spec(
        "account",
        "my account number is four five seven two",
        "piper:My account number is|four, five, seven, two.",
        pauses=(1.0,),
    ),
    Spec(
        "update",
        "the problem started when i updated the app last night",
        "piper:The problem started when I|updated the app last night.",
        pauses=(0.7,),
    ),
    Spec("train", "what time does the next train leave", "piper:What time does the next train leave?"),
    Spec(
        "tuesday",
        "i was thinking that maybe we could meet on tuesday instead",
        "piper:I was thinking that maybe we could|meet on Tuesday instead.",
        pauses=(1.1,),
    ),
    Spec("thanks", "thanks that's all i needed", "piper:Thanks, that's all I needed."),
]


@dataclass(frozen=True)
class Turn:
    name: str
    text: str
    audio: Float32Array
    end: float  # where speech ends (seconds into ``audio``)
    holds: tuple[tuple[float, float], ...]  # pauses of ≥ 100 ms inside the turn
    synthetic: bool


def build(spec: Spec, synth: Callable[[str], Float32Array] | None = None) -> Turn:
    if spec.source.startswith("piper:"):
        if synth is None:
            raise ValueError(f"turn {spec.name!r} is synthesized: pass the Piper voice")
        parts = [_trim(synth(text)) for text in spec.source[len("piper:") :].split("|")]
    else:
        audio = decode_file(spec.source)
        bounds = [0, *(round(c * SAMPLE_RATE) for c in spec.cuts), audio.size]
        parts = [audio[a:b] for a, b in itertools.pairwise(bounds)]
    assert len(parts) == len(spec.pauses) + 1, spec.name
    pieces = [parts[0]]
    for pause, part in zip(spec.pauses, parts[1:], strict=True):
        pieces += [np.zeros(round(pause * SAMPLE_RATE), np.float32), part]
    audio = np.concatenate(pieces).astype(np.float32)
    end, holds = measure(audio)
    return Turn(spec.name, spec.text, audio, end, holds, spec.source.startswith("piper:"))


def corpus(synth: Callable[[str], Float32Array] | None = None) -> list[Turn]:
    """Every turn: the human ones, and the Piper ones when ``synth`` is given."""
    return [build(s, synth) for s in HUMAN + (PIPER if synth is not None else [])]


def measure(audio: Float32Array) -> tuple[float, tuple[tuple[float, float], ...]]:
    """Where speech ends, and the pauses of ≥ 100 ms inside it: 10 ms frames are loud above
    the recording's floor + 15 dB (and 35 dB under its peak); a loud run under 30 ms (a click)
    is not speech; a pause needs 200 ms of speech before it."""
    frames = audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME)
    db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-7)
    floor = float(np.percentile(db[db > -120], 5)) if np.any(db > -120) else -120.0
    loud = db > max(floor + 15, float(db.max()) - 35)
    for start, stop in _runs(loud):
        if stop - start < 3:
            loud[start:stop] = False
    runs = _runs(loud)
    first, last = runs[0][0], runs[-1][1]
    holds = tuple(
        (a / 100, b / 100)
        for (_, a), (b, _) in itertools.pairwise(runs)
        if (b - a) / 100 >= MIN_HOLD_S and a - first >= 20
    )
    return last / 100, holds


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def session(
    turns: list[Turn], gap_s: float = 2.5, lead_s: float = 0.5
) -> tuple[Float32Array, list[tuple[Turn, float]]]:
    """The turns one after another, as a user talking to an agent hears them: ``gap_s`` of
    silence between (the agent's reply), ``lead_s`` before the first. Returns the audio and
    each turn with its offset."""
    pieces = [np.zeros(round(lead_s * SAMPLE_RATE), np.float32)]
    placed: list[tuple[Turn, float]] = []
    t = lead_s
    for turn in turns:
        placed.append((turn, t))
        pieces += [turn.audio, np.zeros(round(gap_s * SAMPLE_RATE), np.float32)]
        t += turn.audio.size / SAMPLE_RATE + gap_s
    return np.concatenate(pieces), placed


def _trim(audio: Float32Array) -> Float32Array:
    """A synthesized clip without its leading and trailing silence (10 ms frames, 40 dB down)."""
    frames = audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME)
    db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-7)
    idx = np.flatnonzero(db > db.max() - 40)
    return audio[idx[0] * FRAME : (idx[-1] + 1) * FRAME]

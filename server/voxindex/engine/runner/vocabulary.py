"""The decoder's vocabulary rules: the prefix a row starts from and the tokens the logit rules
treat apart (suppressed, blank at the start, timestamps, end of text)."""

from __future__ import annotations

import torch

from voxindex.models.whisper import WhisperModel

MAX_INITIAL_TIMESTAMP_S = 1.0
TIMESTAMP_RESOLUTION_S = 0.02
# A row whose tail repeats the same n-gram this many times is in a loop and is stopped early.
LOOP_REPEATS = 4
LOOP_MAX_NGRAM = 12


def logit_constants(model: WhisperModel) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(suppressed tokens, tokens blank at the start) as vocabulary masks, the first timestamp
    token and end of text."""
    tok = model.tokenizer
    sp = tok.special
    vocab = int(model.model.config.vocab_size)
    suppress = torch.zeros(vocab, dtype=torch.bool)
    ids = [i for i in model.suppress_tokens if 0 <= i < vocab] or tok.non_speech_tokens()
    suppress[ids] = True
    suppress[sp.eot + 1 : sp.timestamp_begin] = True  # sot, languages, tasks, no_speech, no_timestamps
    blank = torch.zeros(vocab, dtype=torch.bool)
    blank[[*tok.encode(" "), sp.eot]] = True
    return suppress, blank, sp.timestamp_begin, sp.eot


def sot_sequence(
    model: WhisperModel, language: str | None, timestamps: bool, task: str = "transcribe"
) -> list[int]:
    sp = model.tokenizer.special
    seq = [sp.sot]
    if model.multilingual:
        seq += [
            sp.languages.get(language or "en", sp.languages["en"]),
            sp.translate if task == "translate" else sp.transcribe,
        ]
    if not timestamps:
        seq.append(sp.no_timestamps)
    return seq

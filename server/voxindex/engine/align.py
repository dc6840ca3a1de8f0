"""Word timings and confidences from cross-attention (OpenAI's ``timing.py`` method).

The decoder's alignment heads attend to the audio frames each token was read from.
Normalising those weights, median-filtering them over time and finding the cheapest
monotonic path (DTW) through the token × frame matrix gives when each token, and so
each word, was spoken. A word's confidence is the mean probability of its tokens.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from voxindex.engine.mel import TOKENS_PER_SECOND
from voxindex.engine.types import Word
from voxindex.models.tokenizer import WhisperTokenizer

MEDIAN_FILTER_WIDTH = 7
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


def split_words(tok: WhisperTokenizer, tokens: list[int]) -> list[list[int]]:
    """Group text tokens into words: a word starts at a token beginning with a space or punctuation."""
    words: list[list[int]] = []
    for t in tokens:
        piece = tok.token_bytes(t)
        starts_word = piece.startswith(" ") or (piece.strip() in APPEND_PUNCTUATION and piece.strip() != "")
        if not words or starts_word:
            words.append([t])
        else:
            words[-1].append(t)
    return words


def word_timings(
    tok: WhisperTokenizer,
    tokens: list[int],
    token_logprobs: list[float],
    attention: torch.Tensor,
    offset_s: float = 0.0,
) -> list[Word]:
    """Words of the text ``tokens`` with start/end times (seconds, plus ``offset_s``) and confidence.

    ``attention`` is (heads, len(tokens) + 1, frames): the row predicting each token, then eot.
    Timestamp tokens in ``tokens`` are ignored.
    """
    keep = [i for i, t in enumerate(tokens) if t < tok.special.eot]
    matrix = alignment_matrix(tok, tokens, attention)
    if matrix is None:
        return []
    text_tokens = [tokens[i] for i in keep]
    probs = [math.exp(token_logprobs[i]) for i in keep]
    text_idx, time_idx = dtw(-matrix)
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / TOKENS_PER_SECOND

    word_tokens = split_words(tok, text_tokens)
    bounds = np.pad(np.cumsum([len(w) for w in word_tokens]), (1, 0))
    words: list[Word] = []
    for k, wt in enumerate(word_tokens):
        start = float(jump_times[min(bounds[k], len(jump_times) - 1)])
        end = float(jump_times[min(bounds[k + 1], len(jump_times) - 1)])
        conf = float(np.mean(probs[bounds[k] : bounds[k + 1]]))
        words.append(
            Word(tok.decode(wt), round(start + offset_s, 3), round(end + offset_s, 3), round(conf, 4))
        )
    return _clip_long_words(_merge_punctuation(words))


def alignment_matrix(
    tok: WhisperTokenizer, tokens: list[int], attention: torch.Tensor
) -> npt.NDArray[np.float32] | None:
    """The (text tokens + eot) × frames score DTW follows: the alignment heads' attention,
    normalised per frame, median-filtered over time and averaged over heads. None when there
    is nothing to align."""
    keep = [i for i, t in enumerate(tokens) if t < tok.special.eot]
    rows = attention[:, [*keep, attention.shape[1] - 1]].float()
    if not keep or rows.shape[-1] < 2:
        return None
    weights = rows / rows.sum(-1, keepdim=True).clamp(min=1e-9)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = (weights - mean) / std.clamp(min=1e-9)
    weights = _median_filter(weights, MEDIAN_FILTER_WIDTH)
    return weights.mean(dim=0).numpy()


def _clip_long_words(words: list[Word]) -> list[Word]:
    """DTW stretches a word over a preceding pause; cap such words at twice the median duration.

    The path starts at frame 0, so the first word otherwise always "starts" at the window's start.
    """
    durations = [w.end - w.start for w in words if w.end > w.start]
    median = min(0.7, float(np.median(durations))) if durations else 0.0
    longest = 2 * median
    out: list[Word] = []
    for i, w in enumerate(words):
        start, end = w.start, w.end
        after_pause = i == 0 or words[i - 1].word[-1:] in ".!?。！？"
        if longest and end - start > longest:
            if after_pause:
                start = end - longest
            elif w.word[-1:] in ".!?。！？":
                end = start + longest
        out.append(Word(w.word, round(start, 3), round(end, 3), w.confidence))
    return out


def _median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = torch.nn.functional.pad(x, (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values


def dtw(cost: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Cheapest monotonic path through ``cost`` (tokens × frames); returns (token, frame) index arrays.

    Moves: diagonal, down (next token, same frame), right (next frame, same token). Each row is
    computed in whole-array operations, which matters on a GPU server that aligns hundreds of
    readings a second (a Python loop over frames took 5 ms a reading): within a row, reaching
    frame j by moving right from frame k costs ``best_prev[k-1] + c[k-1] + … + c[j-1]``, so the
    row is the running minimum of ``best_prev - cumsum`` plus the cumsum. On a tie the path
    comes from the row above, diagonal before down (the cell-by-cell version's rule).
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf, dtype=np.float64)
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        diag = acc[i - 1, :-1]
        up = acc[i - 1, 1:]
        best_prev = np.minimum(diag, up)  # entering frame j (1-based) from the row above
        c = cost[i - 1].astype(np.float64)
        run = np.cumsum(c)  # run[j-1] = c[0] + … + c[j-1]
        before = np.concatenate(([0.0], run[:-1]))  # the cost up to frame j-1
        row = np.minimum.accumulate(best_prev - before) + run
        acc[i, 1:] = row
        left = np.concatenate(([np.inf], row[:-1]))  # the same row, one frame back
        trace[i, 1:] = np.where(best_prev <= left, np.where(diag <= up, 0, 1), 2)
    i, j = n, m
    path: list[tuple[int, int]] = []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    arr = np.array(path, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def _merge_punctuation(words: list[Word]) -> list[Word]:
    merged: list[Word] = []
    for w in words:
        stripped = w.word.strip()
        if merged and stripped and all(ch in APPEND_PUNCTUATION for ch in stripped):
            prev = merged[-1]
            merged[-1] = Word(prev.word + w.word.strip(), prev.start, prev.end, prev.confidence)
        else:
            merged.append(w)
    out: list[Word] = []
    carry = ""
    for w in merged:
        stripped = w.word.strip()
        if stripped and all(ch in PREPEND_PUNCTUATION for ch in stripped):
            carry += stripped
            continue
        out.append(Word(carry + w.word.strip(), w.start, w.end, w.confidence) if carry else w)
        carry = ""
    return [Word(w.word.strip(), w.start, w.end, w.confidence) for w in out]

"""The sampler: OpenAI's logit rules as tensor ops over every row, the greedy choice, and the
end of each row judged on the device.

The rules (suppression, blank at start, timestamp pairing and order, first-timestamp limit, no
timestamp past the audio) read the rows' state in the persistent batch; the chosen token, its
log-probability and the alignment heads' attention are written back into it. Nothing here reads
the host, so a step can be captured as a CUDA graph.
"""

from __future__ import annotations

import torch

from voxindex.engine.runner.batch import DONE, ENDED, LOOPED, PersistentBatch
from voxindex.engine.runner.vocabulary import (
    LOOP_MAX_NGRAM,
    LOOP_REPEATS,
    MAX_INITIAL_TIMESTAMP_S,
    TIMESTAMP_RESOLUTION_S,
    logit_constants,
)
from voxindex.models.whisper import WhisperModel

NEG = float("-inf")


class Sampler:
    def __init__(self, model: WhisperModel, batch: PersistentBatch) -> None:
        self.batch = batch
        suppress, blank, self.tb, self.eot = logit_constants(model)
        device = batch.device
        self.vocab_ids = torch.arange(suppress.numel(), device=device)
        self.suppress, self.blank = suppress.to(device), blank.to(device)
        self.text_only = self.suppress | (self.vocab_ids >= self.tb)
        self.max_initial = self.tb + int(MAX_INITIAL_TIMESTAMP_S / TIMESTAMP_RESOLUTION_S)
        self._loop_pairs = _loop_pairs(device)
        self._loop_back = torch.arange(LOOP_REPEATS * LOOP_MAX_NGRAM, device=device)

    def __call__(
        self, logits: torch.Tensor, attention: torch.Tensor, width: int, frames: int, full: bool
    ) -> torch.Tensor:
        """Apply the logit rules to every row at once, pick the best token, and keep its
        log-probability and the alignment heads' attention in the row's slot. ``full`` is false
        when no row decodes timestamps or takes its first step: the rules are then one mask.
        Returns the chosen tokens."""
        b, tb = self.batch, self.tb
        if full:
            logits = logits.masked_fill(self._rule_mask(width), NEG)
        else:
            logits = logits.masked_fill(self.text_only, NEG)
        text_best, text_choice = logits[:, :tb].max(-1)
        text_mass = torch.logsumexp(logits[:, :tb], -1)
        if full:
            # where the timestamps together outweigh every text token, a timestamp must come next
            ts_best, ts_choice = logits[:, tb:].max(-1)
            ts_mass = torch.logsumexp(logits[:, tb:], -1)
            ts_wins = b.timestamps[:width] & (ts_mass > text_best)
            take_ts = ts_wins | (ts_best > text_best)
            choice = torch.where(take_ts, ts_choice + tb, text_choice)
            best = torch.where(take_ts, ts_best, text_best)
            chosen = best - torch.where(ts_wins, ts_mass, torch.logaddexp(text_mass, ts_mass))
            if b.margins is not None:
                logits = logits.masked_fill(ts_wins[:, None] & (self.vocab_ids < tb), NEG)
        else:
            choice, chosen = text_choice, text_best - text_mass
        rows, step = b.arange[:width], b.count[:width].clamp(max=b.budget_len - 1)
        b.logprobs[rows, step] = chosen
        if b.margins is not None:
            top = logits.topk(2, dim=-1).values
            b.margins[rows, step] = top[:, 0] - top[:, 1]
        b.attention[rows, :, step, :frames] = attention.to(b.attention.dtype)
        # the chosen token becomes the row's history for the next step's rules; a finished row
        # (waiting for release) keeps its results
        running = (b.status[:width] & DONE) == 0
        b.history[rows, step] = torch.where(running, choice, b.history[rows, step])
        last = b.last[:width]
        b.prev[:width] = torch.where(b.count[:width] >= 1, last, b.prev[:width])
        b.stamp[:width] = torch.where(choice >= tb, choice, b.stamp[:width])
        b.count[:width] += running.long()
        b.first[:width] = False
        b.choice[:width] = choice
        self._judge(choice, running, width)
        return choice

    def _judge(self, choice: torch.Tensor, running: torch.Tensor, width: int) -> None:
        """Mark the rows this step finished: end of text, budget spent, or a repetition loop."""
        b = self.batch
        ended = running & (choice == self.eot)
        grown = running & ~ended
        tokens = b.count[:width]
        spent = grown & (tokens >= b.budget[:width])
        looped = grown & ~spent & self._looping(tokens, width)
        flags = (ended | spent | looped).long() * DONE + ended.long() * ENDED + looped.long() * LOOPED
        b.status[:width] |= flags

    def _looping(self, tokens: torch.Tensor, width: int) -> torch.Tensor:
        """Whether each row's last ``n`` tokens were said ``LOOP_REPEATS`` times in a row, for
        some ``n ≤ LOOP_MAX_NGRAM``: token ``L-1-j`` equals token ``L-1-j-n`` for ``j < 3n``."""
        a, b, unused, shortest = self._loop_pairs
        back = (tokens[:, None] - 1 - self._loop_back).clamp(min=0)
        recent = self.batch.history[:width].gather(1, back)  # recent[:, j] is token L-1-j
        same = (recent[:, a] == recent[:, b]) | unused
        return (same.all(-1) & (tokens[:, None] >= shortest)).any(-1)

    def _rule_mask(self, width: int) -> torch.Tensor:
        """(width, vocab): True where OpenAI's rules forbid a token at this step."""
        s, idx, tb = self.batch, self.vocab_ids, self.tb
        first, ts = s.first[:width, None], s.timestamps[:width, None]
        last, prev, stamp = s.last[:width, None], s.prev[:width, None], s.stamp[:width, None]
        count = s.count[:width, None]
        is_ts = idx >= tb
        last_ts = (count >= 1) & (last >= tb)
        pair_closed = last_ts & ((count < 2) | (prev >= tb))  # text must follow
        segment_ended = last_ts & ~pair_closed  # a timestamp or end of text must follow
        floor = torch.where(segment_ended, stamp, stamp + 1)  # timestamps never go back
        ts_rules = (
            (pair_closed & is_ts)
            | (segment_ended & (idx < self.eot))
            | ((stamp >= 0) & is_ts & (idx < floor))
            | (first & ((idx < tb) | (idx > self.max_initial)))
            | (idx > s.last_allowed[:width, None])  # no timestamp past the audio
        )
        mask: torch.Tensor = self.suppress | (first & self.blank) | torch.where(ts, ts_rules, is_ts)
        return mask


def _loop_pairs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index pairs for ``Sampler._looping``: for each n-gram length n (rows) the comparisons
    j ↔ j + n for j < 3n, padding marked unused, and the fewest tokens a loop of n needs."""
    width = (LOOP_REPEATS - 1) * LOOP_MAX_NGRAM
    j = torch.arange(width)[None, :]
    n = torch.arange(1, LOOP_MAX_NGRAM + 1)[:, None]
    unused = j >= (LOOP_REPEATS - 1) * n
    a = torch.where(unused, 0, j).expand(LOOP_MAX_NGRAM, width)
    b = torch.where(unused, 0, j + n)
    return a.to(device), b.to(device), unused.to(device), (LOOP_REPEATS * n[:, 0]).to(device)

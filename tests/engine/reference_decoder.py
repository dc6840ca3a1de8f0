"""The reference decoder: batched greedy decoding through transformers' decoder module.

The engine decodes with ``voxindex.engine.runner.Runner`` (static KV cache, slots, logit rules as
tensor ops); this path is kept here so tests and ``benchmarks/decode_step.py`` can check the
runner against it. Every row carries its own prompt, language and timestamp mode; rows are
left-padded to a common prefix length and masked. Logit rules follow OpenAI's decoder (suppress
special tokens and blanks at the start, paired and monotonic timestamps), row by row in Python.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from voxindex.engine.encoder import encode
from voxindex.engine.mel import N_FRAMES
from voxindex.engine.runner.vocabulary import (
    LOOP_MAX_NGRAM,
    LOOP_REPEATS,
    MAX_INITIAL_TIMESTAMP_S,
    TIMESTAMP_RESOLUTION_S,
    logit_constants,
    sot_sequence,
)
from voxindex.engine.types import DecodeOptions, Hypothesis
from voxindex.models.whisper import WhisperModel


class Decoder:
    """The reference decode path (see the module's docstring)."""

    def __init__(self, model: WhisperModel, record_margins: bool = False) -> None:
        self.model = model
        self.tok = model.tokenizer
        suppress, blank, self.timestamp_begin, _ = logit_constants(model)
        self.suppress = suppress.to(model.device)
        self.blank_ids = blank.nonzero()[:, 0].tolist()
        self.max_positions = model.max_target_positions
        self.record_margins = record_margins

    def encode(self, mels: torch.Tensor, frames: int = N_FRAMES) -> torch.Tensor:
        return encode(self.model, mels, frames)

    def sot_sequence(self, language: str | None, timestamps: bool, task: str = "transcribe") -> list[int]:
        return sot_sequence(self.model, language, timestamps, task)

    @torch.inference_mode()
    def detect_language(self, encoder_out: torch.Tensor) -> list[str]:
        """Most likely language per row, from the logits after ``<|startoftranscript|>``."""
        sp = self.tok.special
        if not self.model.multilingual:
            return ["en"] * encoder_out.shape[0]
        ids = torch.full((encoder_out.shape[0], 1), sp.sot, device=self.model.device)
        hidden = self.model.model.model.decoder(
            input_ids=ids, encoder_hidden_states=encoder_out
        ).last_hidden_state
        logits = self.model.model.proj_out(hidden[:, -1]).float()
        codes = list(sp.languages)
        lang_ids = torch.tensor([sp.languages[c] for c in codes], device=logits.device)
        best = logits[:, lang_ids].argmax(dim=-1).tolist()
        return [codes[i] for i in best]

    @torch.inference_mode()
    def decode(self, encoder_out: torch.Tensor, options: list[DecodeOptions]) -> list[Hypothesis]:
        """Greedy-decode every row of ``encoder_out`` (B, frames, d) under its own options."""
        batch = len(options)
        device = self.model.device
        sp = self.tok.special
        languages: list[str | None] = [o.language for o in options]
        auto_rows = [i for i, o in enumerate(options) if o.language == "auto"]
        if auto_rows:
            detected = self.detect_language(encoder_out[auto_rows])
            for row, code in zip(auto_rows, detected, strict=True):
                languages[row] = code
        if not self.model.multilingual:
            languages = [None] * batch

        prefixes = []
        for opt, lang in zip(options, languages, strict=True):
            sot_seq = self.sot_sequence(lang, opt.timestamps, opt.task)
            prompt = list(opt.prompt)[-(self.max_positions // 2 - 1) :]
            prefixes.append(([sp.sot_prev, *prompt] if prompt else []) + sot_seq)
        width = max(len(p) for p in prefixes)
        ids = torch.full((batch, width), sp.eot, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        sot_index = torch.zeros(batch, dtype=torch.long)
        for i, p in enumerate(prefixes):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
            sot_index[i] = width - len(p) + p.index(sp.sot)
        ids, mask = ids.to(device), mask.to(device)
        budget = [min(o.max_tokens, self.max_positions - width - 1) for o in options]
        max_steps = max(1, max(budget))
        align = any(o.align for o in options) and bool(self.model.alignment_heads)
        frames = max(o.num_frames for o in options) // 2

        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        tokens: list[list[int]] = [[] for _ in range(batch)]
        logprobs: list[list[float]] = [[] for _ in range(batch)]
        done = [False] * batch
        looped = [False] * batch
        attn_rows: list[torch.Tensor] = []
        margins: list[list[float]] = [[] for _ in range(batch)]
        no_speech = [0.0] * batch
        step_ids, positions = ids, (mask.cumsum(-1) - 1).clamp(min=0)

        for step in range(max_steps):
            out = self.model.model.model.decoder(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=positions,
                encoder_hidden_states=encoder_out,
                past_key_values=cache,
                use_cache=True,
                output_attentions=align,
            )
            hidden = out.last_hidden_state
            if step == 0:
                ns = self.model.model.proj_out(hidden[torch.arange(batch), sot_index.to(device)]).float()
                no_speech = ns.softmax(-1)[:, sp.no_speech].tolist()
            if align:
                heads = [
                    out.cross_attentions[layer][:, head, -1, :frames]
                    for layer, head in self.model.alignment_heads
                ]
                attn_rows.append(torch.stack(heads, dim=1).to(torch.float16).cpu())
            logits = self.model.model.proj_out(hidden[:, -1]).float()
            logits = self._apply_rules(logits, tokens, options, first=step == 0)
            if self.record_margins:
                top = logits.topk(2, dim=-1).values
                for i, m in enumerate((top[:, 0] - top[:, 1]).tolist()):
                    if not done[i]:
                        margins[i].append(m)
            logp = logits.log_softmax(-1)
            choice = logits.argmax(-1)
            chosen_logp = logp.gather(1, choice[:, None])[:, 0]
            for i, (tok, lp) in enumerate(zip(choice.tolist(), chosen_logp.tolist(), strict=True)):
                if done[i]:
                    continue
                if tok == sp.eot:
                    done[i] = True
                    continue
                tokens[i].append(tok)
                logprobs[i].append(lp)
                if len(tokens[i]) >= budget[i]:
                    done[i] = True
                elif is_looping(tokens[i]):
                    done[i] = looped[i] = True
            if all(done):
                break
            step_ids = choice[:, None]
            positions = positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)

        attention = torch.stack(attn_rows, dim=2) if attn_rows else None  # (B, heads, steps, frames)
        hyps = []
        for i in range(batch):
            rows = None
            if attention is not None and options[i].align:
                rows = attention[i, :, : len(tokens[i]) + 1, : options[i].num_frames // 2]
            hyp = Hypothesis(tokens[i], logprobs[i], no_speech[i], languages[i], looped[i], rows)
            hyp.margins = margins[i] if self.record_margins else None
            hyps.append(hyp)
        return hyps

    def _apply_rules(
        self, logits: torch.Tensor, tokens: list[list[int]], options: list[DecodeOptions], first: bool
    ) -> torch.Tensor:
        logits = logits.masked_fill(self.suppress, float("-inf"))
        if first:
            logits[:, self.blank_ids] = float("-inf")
        tb = self.timestamp_begin
        for i, opt in enumerate(options):
            if not opt.timestamps:
                logits[i, tb:] = float("-inf")
                continue
            self._timestamp_rules(logits[i], tokens[i], first, opt.num_frames)
        return logits

    def _timestamp_rules(self, row: torch.Tensor, seq: list[int], first: bool, num_frames: int) -> None:
        """OpenAI's ApplyTimestampRules for one row, in place."""
        tb, eot = self.timestamp_begin, self.tok.special.eot
        last_ts = len(seq) >= 1 and seq[-1] >= tb
        penultimate_ts = len(seq) < 2 or seq[-2] >= tb
        if last_ts:
            if penultimate_ts:
                row[tb:] = float("-inf")  # a pair closed: text must follow
            else:
                row[:eot] = float("-inf")  # a segment ended: a timestamp or eot must follow
        stamps = [t for t in seq if t >= tb]
        if stamps:
            floor = stamps[-1] if (last_ts and not penultimate_ts) else stamps[-1] + 1
            row[tb:floor] = float("-inf")
        if first:
            row[:tb] = float("-inf")
            row[tb + int(MAX_INITIAL_TIMESTAMP_S / TIMESTAMP_RESOLUTION_S) + 1 :] = float("-inf")
        # no timestamp beyond the audio actually present
        last_allowed = tb + num_frames // 2
        row[last_allowed + 1 :] = float("-inf")
        logp = row.log_softmax(-1)
        if torch.logsumexp(logp[tb:], -1) > logp[:tb].max():
            row[:tb] = float("-inf")


def is_looping(seq: list[int]) -> bool:
    n_max = min(LOOP_MAX_NGRAM, len(seq) // LOOP_REPEATS)
    for n in range(1, n_max + 1):
        tail = seq[-n:]
        if all(seq[-n * (k + 1) : len(seq) - n * k] == tail for k in range(1, LOOP_REPEATS)):
            return True
    return False

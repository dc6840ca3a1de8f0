"""The decoder's model runner: Whisper's decoder over a static KV cache whose rows are slots.

gpt-fast's decoder and vLLM's persistent batch, for Whisper. A reading occupies one slot from
``admit`` to ``release``. Admission stores the cross-attention K/V of its encoder output in the
slot once and prefills its prefix; ``step`` then decodes one token for every occupied slot:

- self-attention K/V are written in place at each row's own position of a preallocated
  ``[layers, slots, heads, max_tokens, head_dim]`` cache; occupied slots are kept packed at
  ``0..n-1`` (a row that leaves is replaced by the last one), so a step works on plain views
  (``batch.PersistentBatch``);
- the logit rules (suppression, blank at start, timestamp pairing and order, first-timestamp
  limit, no timestamp past the audio) are one set of tensor ops over the batch (``sampler``);
- the chosen tokens, their log-probabilities and the alignment heads' cross-attention stay on
  the device until the row is released, and so does the end of a row (end of text, its token
  budget, a repetition loop): the only host read per step is one status word per row, and host
  work per step is for the rows that just finished, not for every row.

With ``static_shapes`` a step always covers a bucket of slots (the next of ``BUCKETS``) and the
whole cache length, so its shapes never change: that is what a CUDA graph replays, and on CUDA
``capture()`` records one graph per bucket. On the CPU the same static step runs eagerly (tests
prove it equal); without ``static_shapes`` the step trims attention to the lengths in use, which
is faster when nothing is captured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voxindex.engine.runner.batch import DONE, ENDED, LOOPED, MAX_FRAMES, PersistentBatch
from voxindex.engine.runner.forward import DecoderForward
from voxindex.engine.runner.sampler import Sampler
from voxindex.engine.runner.vocabulary import sot_sequence
from voxindex.engine.types import DecodeOptions, Hypothesis
from voxindex.models.whisper import WhisperModel

NEG = float("-inf")
DRAFT_MARGIN = 1.0  # logits: a draft token is kept only where its choice is no near-tie
BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


@dataclass
class _Row:
    """Host-side state of one occupied slot (what it decodes lives on the device)."""

    key: int
    options: DecodeOptions
    language: str | None
    no_speech: float
    status: int = 0


class Runner:
    def __init__(
        self,
        model: WhisperModel,
        slots: int = 16,
        static_shapes: bool = False,
        record_margins: bool = False,
    ) -> None:
        self.model, self.tok = model, model.tokenizer
        self.forward = DecoderForward(model)
        self.max_tokens = self.forward.shape.max_tokens
        self.static = static_shapes
        self.capacity = _bucket(slots) if static_shapes else slots
        self.batch = PersistentBatch(
            self.capacity, self.forward.shape, model.device, model.dtype, record_margins
        )
        self.sampler = Sampler(model, self.batch)
        self.rows: list[_Row] = []  # rows[i] occupies slot i
        self._unstepped = 0  # rows admitted or restarted since the last step (they need every rule)
        self._timestamped = 0  # rows decoding timestamps
        self._next_key = 0
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}

    # ---------------- occupancy ----------------
    @property
    def free(self) -> int:
        return self.capacity - len(self.rows)

    @torch.inference_mode()
    def admit(self, encoded: torch.Tensor, options: list[DecodeOptions]) -> list[int]:
        """Put each row of ``encoded`` (B, frames, d) into a free slot under its options and
        prefill its prefix. Returns the rows' keys."""
        if len(options) > self.free:
            raise ValueError(f"{len(options)} rows do not fit in {self.free} free slots")
        first = len(self.rows)
        slots = torch.arange(first, first + len(options), device=self.model.device)
        self.forward.store_cross(self.batch, slots, encoded)
        languages = self._languages(slots, options)
        keys = []
        for opt, language in zip(options, languages, strict=True):
            keys.append(self._next_key)
            self.rows.append(_Row(self._next_key, opt, language, 0.0))
            self._timestamped += opt.timestamps
            self._next_key += 1
        self._prefill(list(range(first, first + len(options))))
        return keys

    @torch.inference_mode()
    def restart(self, key: int, options: DecodeOptions) -> None:
        """Decode a row again under new options (a retry without prompt), keeping its encoder
        output's K/V."""
        i = self._slot(key)
        row = self.rows[i]
        self._timestamped += options.timestamps - row.options.timestamps
        self.rows[i] = _Row(key, options, row.language, 0.0)
        self._prefill([i])

    def result(self, key: int) -> Hypothesis:
        """What the row decoded so far (all of it once ``step`` said it finished)."""
        i, b = self._slot(key), self.batch
        row = self.rows[i]
        steps = int(b.count[i])
        ended = bool(row.status & ENDED)
        n = steps - 1 if ended else steps  # a row stopped by its budget or a loop never chose eot
        attention = None
        if row.options.align and self.forward.align:
            attention = b.attention[i, :, :steps, : row.options.num_frames // 2].to("cpu", copy=True)
        tokens = b.history[i, :n].tolist()
        logprobs = b.logprobs[i, :n].tolist()
        looped = bool(row.status & LOOPED)
        hyp = Hypothesis(tokens, logprobs, row.no_speech, row.language, looped, attention)
        if b.margins is not None:
            hyp.margins = b.margins[i, : n + 1].tolist()
        return hyp

    def release(self, key: int) -> Hypothesis:
        """The row's result, and its slot freed (the last row moves into it)."""
        hyp = self.result(key)
        i, last = self._slot(key), len(self.rows) - 1
        self._timestamped -= self.rows[i].options.timestamps
        if i != last:
            self.batch.move(last, i)
            self.rows[i] = self.rows[last]
        self.rows.pop()
        return hyp

    def decode(self, encoded: torch.Tensor, options: list[DecodeOptions]) -> list[Hypothesis]:
        """Decode rows to the end together (offline use)."""
        keys = self.admit(encoded, options)
        pending = set(keys)
        while pending:
            pending -= set(self.step())
        return [self.release(key) for key in keys]

    def _slot(self, key: int) -> int:
        for i, row in enumerate(self.rows):
            if row.key == key:
                return i
        raise KeyError(key)

    # ---------------- the step ----------------
    @torch.inference_mode()
    def step(self) -> list[int]:
        """One token for every occupied slot. Returns the keys of rows that just finished
        (end of text, budget or loop); they stay in their slots until ``release``."""
        n = len(self.rows)
        if not n or all(r.status & DONE for r in self.rows):
            return []
        width = _bucket(n) if self.static else n
        graph = self._graphs.get(width)
        if graph is not None:
            graph.replay()
        else:
            self._decode(width, full=bool(self._unstepped or self._timestamped))
        self._unstepped = 0
        status = self.batch.status[:n].cpu().numpy()  # the one host read of the step
        finished = []
        for i in (status & DONE).nonzero()[0].tolist():
            row = self.rows[i]
            if not row.status & DONE:
                finished.append(row.key)
            row.status = int(status[i])
        return finished

    def _decode(self, width: int, full: bool = True) -> None:
        """The step's tensor work for slots ``0..width-1``: no host reads, no data-dependent
        Python, so with static shapes it can be captured as a graph."""
        b = self.batch
        if self.static:
            keys, frames = self.max_tokens, MAX_FRAMES
        else:
            keys = int(b.pos[:width].max()) + 1
            frames = int(b.frames[:width].max())
        ids, pos = b.last[:width, None], b.pos[:width, None]
        hidden, attention = self.forward(b, ids, pos, width, keys, frames)
        logits = self.forward.logits(hidden[:, 0])
        b.last[:width] = self.sampler(logits, attention[:, :, 0], width, frames, full or self.static)
        b.pos[:width] = (b.pos[:width] + 1).clamp(max=self.max_tokens - 1)  # idle slots stay in range

    # ---------------- admission ----------------
    def _languages(self, slots: torch.Tensor, options: list[DecodeOptions]) -> list[str | None]:
        """Each row's language; "auto" is detected from the logits after <|startoftranscript|>."""
        if not self.model.multilingual:
            return [None] * len(options)
        languages: list[str | None] = [o.language or "en" for o in options]
        auto = [j for j, o in enumerate(options) if o.language == "auto"]
        if auto:
            sp = self.tok.special
            codes = list(sp.languages)
            index = slots[auto]
            ids = torch.full((len(auto), 1), sp.sot, device=index.device)
            frames = int(self.batch.frames[index].max())
            hidden, _ = self.forward(self.batch, ids, torch.zeros_like(ids), index, 1, frames)
            lang_ids = torch.tensor([sp.languages[c] for c in codes], device=index.device)
            best = self.forward.logits(hidden[:, 0])[:, lang_ids].argmax(-1).tolist()
            for j, b in zip(auto, best, strict=True):
                languages[j] = codes[b]
        return languages

    def _prefill(self, slots: list[int]) -> None:
        """Write the K/V of each row's prefix into its slot, set up its decode state (the last
        prefix token is fed again by the first step) and read its no-speech probability after
        <|startoftranscript|>."""
        sp, dev, tb = self.tok.special, self.model.device, self.sampler.tb
        prefixes, budgets, drafts = [], [], []
        for i in slots:
            row = self.rows[i]
            prompt = list(row.options.prompt)[-(self.max_tokens // 2 - 1) :]
            sot = sot_sequence(self.model, row.language, row.options.timestamps, row.options.task)
            prefixes.append(([sp.sot_prev, *prompt] if prompt else []) + sot)
            budgets.append(min(row.options.max_tokens, self.max_tokens - len(prefixes[-1]) - 1))
            timestamps = row.options.timestamps  # a draft is text: a timestamped row decodes alone
            drafts.append([] if timestamps else list(row.options.draft)[: max(0, budgets[-1] - 1)])
        self._unstepped += len(slots)
        options = [self.rows[i].options for i in slots]
        self.batch.reset(
            slots,
            last=torch.tensor([p[-1] for p in prefixes], device=dev),
            pos=torch.tensor([len(p) - 1 for p in prefixes], device=dev),
            count=0,
            prev=-1,
            stamp=-1,
            status=0,
            budget=torch.tensor(budgets, device=dev),
            first=True,
            timestamps=torch.tensor([o.timestamps for o in options], device=dev),
            last_allowed=torch.tensor([tb + o.num_frames // 2 for o in options], device=dev),
        )
        index = torch.tensor(slots, device=dev)
        frames = int(self.batch.frames[index].max())
        hidden, attention = self._feed(index, [0] * len(slots), prefixes, frames)
        at = torch.tensor([p.index(sp.sot) for p in prefixes], device=dev)
        logits = self.forward.logits(hidden[torch.arange(len(slots), device=dev), at])
        for i, p in zip(slots, logits.softmax(-1)[:, sp.no_speech].tolist(), strict=True):
            self.rows[i].no_speech = p
        # the drafts in a pass of their own: the prefix's K/V are computed exactly as without
        # one (int8 layers quantize a pass's activations with one scale)
        rows = [j for j, d in enumerate(drafts) if d]
        if rows:
            starts = [len(prefixes[j]) for j in rows]
            ahead, seen = self._feed(index[rows], starts, [drafts[j] for j in rows], frames)
            for k, (j, start) in enumerate(zip(rows, starts, strict=True)):
                n = len(drafts[j])
                h = torch.cat([hidden[j, start - 1 : start], ahead[k, :n]])
                a = torch.cat([attention[j, :, start - 1 : start], seen[k, :, :n]], dim=1)
                self._take_draft(slots[j], start, drafts[j], h, a, frames)

    def _feed(
        self, index: torch.Tensor, starts: list[int], tokens: list[list[int]], frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the decoder over each row's ``tokens`` from position ``starts[j]`` (its K/V into
        the slot's cache, after what is there): hidden states and alignment attention."""
        sp, dev = self.tok.special, self.model.device
        length = max(len(t) for t in tokens)
        ids = torch.full((len(tokens), length), sp.eot, dtype=torch.long)
        pos = torch.full((len(tokens), length), self.max_tokens - 1, dtype=torch.long)  # padding: scratch
        for j, (start, t) in enumerate(zip(starts, tokens, strict=True)):
            ids[j, : len(t)] = torch.tensor(t)
            pos[j, : len(t)] = torch.arange(start, start + len(t))
        keys = max(s + len(t) for s, t in zip(starts, tokens, strict=True))
        return self.forward(self.batch, ids.to(dev), pos.to(dev), index, keys, frames)

    def _take_draft(
        self,
        slot: int,
        start: int,
        draft: list[int],
        hidden: torch.Tensor,
        attention: torch.Tensor,
        frames: int,
    ) -> None:
        """Keep the longest start of the row's ``draft`` that greedy decoding would have chosen
        token by token (prompt lookup decoding, with the stream's previous reading as the
        lookup): the draft was fed after the prefix (which ends at ``start - 1``), so
        ``hidden[k]`` and ``attention[:, k]`` (the prefix's last position, then the draft's)
        are what step ``k`` would have seen. The row then goes on from the first token it would
        not have chosen, as if it had decoded the kept ones one step at a time: same tokens,
        log-probabilities and alignment attention, fewer steps."""
        b = self.batch
        logits = self.forward.logits(hidden).masked_fill(self.sampler.text_only, NEG)
        logits[0] = logits[0].masked_fill(self.sampler.blank, NEG)  # the first step's rule
        tokens = torch.tensor(draft, device=self.model.device)
        # kept where greedy decoding chooses it, by more than a near-tie: int8 layers quantize
        # the draft's pass with one scale, a step with another, and that may flip a near-tie
        best, chosen = logits[:-1].topk(2, dim=-1)
        agree = (chosen[:, 0] == tokens) & (best[:, 0] - best[:, 1] > DRAFT_MARGIN)
        n = int(agree.long().cumprod(0).sum())
        if not n:
            return
        kept = logits[:n].log_softmax(-1)
        b.history[slot, :n] = tokens[:n]
        b.logprobs[slot, :n] = kept.gather(1, tokens[:n, None])[:, 0]
        if b.margins is not None:
            b.margins[slot, :n] = best[:n, 0] - best[:n, 1]
        b.attention[slot, :, :n, :frames] = attention[:, :n].to(b.attention.dtype)
        b.count[slot], b.pos[slot], b.last[slot] = n, start - 1 + n, draft[n - 1]
        b.prev[slot] = draft[n - 2] if n >= 2 else -1
        b.first[slot] = False

    # ---------------- CUDA graphs ----------------
    def capture(self) -> None:
        """Record the step of every bucket up to the capacity as a CUDA graph (CUDA only)."""
        if not self.static or self.model.device.type != "cuda":
            raise RuntimeError("graph capture needs static shapes on a CUDA device")
        widths = [width for width in BUCKETS if width <= self.capacity]
        with torch.inference_mode():
            stream = torch.cuda.Stream(self.model.device)  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream(self.model.device))
            with torch.cuda.stream(stream):
                for width in widths:
                    self._decode(width)  # warm-up: allocations and kernel choice happen outside the graph
            torch.cuda.current_stream(self.model.device).wait_stream(stream)
            for width in widths:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self._decode(width)
                self._graphs[width] = graph


def _bucket(n: int) -> int:
    for b in BUCKETS:
        if b >= n:
            return b
    return -(-n // BUCKETS[-1]) * BUCKETS[-1]

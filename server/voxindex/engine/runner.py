"""The decoder's model runner: Whisper's decoder over a static KV cache whose rows are slots.

gpt-fast's decoder and vLLM's persistent batch, for Whisper. A reading occupies one slot from
``admit`` to ``release``. Admission stores the cross-attention K/V of its encoder output in the
slot once and prefills its prefix; ``step`` then decodes one token for every occupied slot:

- self-attention K/V are written in place at each row's own position of a preallocated
  ``[layers, slots, heads, max_tokens, head_dim]`` cache; occupied slots are kept packed at
  ``0..n-1`` (a row that leaves is replaced by the last one), so a step works on plain views;
- the logit rules (suppression, blank at start, timestamp pairing and order, first-timestamp
  limit, no timestamp past the audio) are one set of tensor ops over the batch;
- the chosen tokens, their log-probabilities and the alignment heads' cross-attention stay on
  the device until the row is released, and so does the end of a row (end of text, its token
  budget, a repetition loop): the only host read per step is one status word per row, and host
  work per step is for the rows that just finished, not for every row.

With ``static_shapes`` a step always covers a bucket of slots (the next of ``BUCKETS``) and the
whole cache length, so its shapes never change: that is what a CUDA graph replays, and on CUDA
``capture()`` records one graph per bucket. On the CPU the same static step runs eagerly (tests
prove it equal); without ``static_shapes`` the step trims attention to the lengths in use, which
is faster when nothing is captured.

Linear layers are called as torch modules (plain or int8-quantized ``Linear``); everything else
(embeddings, norms, attention) is written here against the checkpoint's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from voxindex.engine.decode import (
    LOOP_MAX_NGRAM,
    LOOP_REPEATS,
    MAX_INITIAL_TIMESTAMP_S,
    TIMESTAMP_RESOLUTION_S,
    DecodeOptions,
    Hypothesis,
    logit_constants,
    sot_sequence,
)
from voxindex.models.loader import WhisperModel

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
MAX_FRAMES = 1500  # encoder positions of a 30-second window
NEG = float("-inf")
# a row's status word, written on the device by every step
DONE, ENDED, LOOPED = 1, 2, 4  # ENDED: chose end of text (rather than stopped by budget or loop)


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
        wm: WhisperModel,
        slots: int = 16,
        static_shapes: bool = False,
        record_margins: bool = False,
    ) -> None:
        self.wm, self.tok = wm, wm.tokenizer
        cfg = wm.model.config
        dec = wm.model.model.decoder
        self.layers = list(dec.layers)
        self.embed, self.positions, self.norm = dec.embed_tokens, dec.embed_positions.weight, dec.layer_norm
        self.proj = wm.model.proj_out
        self.heads = int(cfg.decoder_attention_heads)
        self.head_dim = int(cfg.d_model) // self.heads
        self.max_tokens = int(cfg.max_target_positions)
        self.static = static_shapes
        self.capacity = _bucket(slots) if static_shapes else slots
        n, dev, dt = len(self.layers), wm.device, wm.dtype
        s, h, d = self.capacity, self.heads, self.head_dim
        self.k = torch.zeros(n, s, h, self.max_tokens, d, device=dev, dtype=dt)
        self.v = torch.zeros_like(self.k)
        # cross-attention keys are stored transposed (head_dim × frames): a step's q·K is then a
        # plain batched product over contiguous rows, the step's largest memory read
        self.xk = torch.zeros(n, s, h, d, MAX_FRAMES, device=dev, dtype=dt)
        self.xv = torch.zeros(n, s, h, MAX_FRAMES, d, device=dev, dtype=dt)
        # per-slot decode state, on the device

        def longs(fill: int = 0) -> torch.Tensor:
            return torch.full((s,), fill, device=dev, dtype=torch.long)

        def flags() -> torch.Tensor:
            return torch.zeros(s, device=dev, dtype=torch.bool)

        self.frames = longs(1)  # encoder positions of the slot's window
        self.pos = longs()  # position of the token fed next
        self.last = longs()  # the token fed next
        self.count = longs()  # tokens generated so far
        self.prev = longs(-1)  # the token before ``last`` among generated ones
        self.stamp = longs(-1)  # the last timestamp token generated
        self.first = flags()
        self.timestamps = flags()
        self.last_allowed = longs()  # the latest timestamp token the audio allows
        self.choice = longs()
        self.budget = longs()  # the most tokens the row may generate
        self.status = longs()  # DONE | ENDED | LOOPED
        budget = self.max_tokens // 2 + 1
        self.history = torch.zeros(s, budget, device=dev, dtype=torch.long)  # the chosen tokens
        self.logprobs = torch.zeros(s, budget, device=dev, dtype=torch.float32)
        self.margins = torch.zeros(s, budget, device=dev, dtype=torch.float32)
        self.align = wm.alignment_heads
        self.attention = torch.zeros(s, len(self.align), budget, MAX_FRAMES, device=dev, dtype=torch.float16)
        self.arange = torch.arange(s, device=dev)
        suppress, blank, self.tb, self.eot = logit_constants(wm)
        vocab = suppress.numel()
        self.vocab_ids = torch.arange(vocab, device=dev)
        self.suppress, self.blank = suppress.to(dev), blank.to(dev)
        self.text_only = self.suppress | (self.vocab_ids >= self.tb)
        self.max_initial = self.tb + int(MAX_INITIAL_TIMESTAMP_S / TIMESTAMP_RESOLUTION_S)
        self.record_margins = record_margins
        self.rows: list[_Row] = []  # rows[i] occupies slot i
        self._unstepped = 0  # rows admitted or restarted since the last step (they need every rule)
        self._timestamped = 0  # rows decoding timestamps
        self._loop_pairs = _loop_pairs(dev)
        self._loop_back = torch.arange(LOOP_REPEATS * LOOP_MAX_NGRAM, device=dev)
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
        slots = torch.arange(first, first + len(options), device=self.wm.device)
        frames = encoded.shape[1]
        for i, layer in enumerate(self.layers):
            a = layer.encoder_attn
            self.xk[i, slots, :, :, :frames] = self._split(a.k_proj(encoded)).transpose(-1, -2)
            self.xv[i, slots, :, :frames] = self._split(a.v_proj(encoded))
        self.frames[slots] = frames
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
        i = self._slot(key)
        row = self.rows[i]
        steps = int(self.count[i])
        ended = bool(row.status & ENDED)
        n = steps - 1 if ended else steps  # a row stopped by its budget or a loop never chose eot
        attention = None
        if row.options.align and self.align:
            attention = self.attention[i, :, :steps, : row.options.num_frames // 2].to("cpu", copy=True)
        tokens = self.history[i, :n].tolist()
        logprobs = self.logprobs[i, :n].tolist()
        looped = bool(row.status & LOOPED)
        hyp = Hypothesis(tokens, logprobs, row.no_speech, row.language, looped, attention)
        if self.record_margins:
            hyp.margins = self.margins[i, : n + 1].tolist()
        return hyp

    def release(self, key: int) -> Hypothesis:
        """The row's result, and its slot freed (the last row moves into it)."""
        hyp = self.result(key)
        i, last = self._slot(key), len(self.rows) - 1
        self._timestamped -= self.rows[i].options.timestamps
        if i != last:
            self._move(last, i)
            self.rows[i] = self.rows[last]
        self.rows.pop()
        return hyp

    def decode(self, encoded: torch.Tensor, options: list[DecodeOptions]) -> list[Hypothesis]:
        """Decode rows to the end together (the reference decoder's call, for offline use)."""
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

    def _move(self, src: int, dst: int) -> None:
        """Copy slot ``src``'s state into ``dst`` (only the parts in use)."""
        keys, frames = int(self.pos[src]) + 1, int(self.frames[src])
        steps = min(int(self.count[src]) + 1, self.logprobs.shape[1])
        for t in (self.k, self.v):
            t[:, dst, :, :keys] = t[:, src, :, :keys]
        self.xk[:, dst, :, :, :frames] = self.xk[:, src, :, :, :frames]
        self.xv[:, dst, :, :frames] = self.xv[:, src, :, :frames]
        self.attention[dst, :, :steps, :frames] = self.attention[src, :, :steps, :frames]
        for t in (self.history, self.logprobs, self.margins):
            t[dst, :steps] = t[src, :steps]
        for t in (self.frames, self.pos, self.last, self.count, self.prev, self.stamp, self.budget):
            t[dst] = t[src]
        for t in (self.status, self.first, self.timestamps, self.last_allowed):
            t[dst] = t[src]

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
        status = self.status[:n].cpu().numpy()  # the one host read of the step
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
        if self.static:
            keys, frames = self.max_tokens, MAX_FRAMES
        else:
            keys = int(self.pos[:width].max()) + 1
            frames = int(self.frames[:width].max())
        ids, pos = self.last[:width, None], self.pos[:width, None]
        hidden, attention = self._forward(ids, pos, width, keys, frames)
        logits = self.proj(hidden[:, 0]).float()
        self._choose(logits, attention[:, :, 0], width, frames, full or self.static)
        self.last[:width] = self.choice[:width]
        self.pos[:width] = (self.pos[:width] + 1).clamp(max=self.max_tokens - 1)  # idle slots stay in range

    def _forward(
        self, ids: torch.Tensor, pos: torch.Tensor, slots: int | torch.Tensor, keys: int, frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder over ``ids`` (rows, q) at positions ``pos`` for ``slots`` (``0..slots-1``, read
        as views, or any slot indices, gathered): writes their K/V into the cache and attends to
        cache positions ``< keys`` and ``≤ pos``. Returns the hidden states and the alignment
        heads' cross-attention (rows, heads, q, frames)."""
        at = slice(0, slots) if isinstance(slots, int) else slots
        x = self.embed(ids) + self.positions[pos]
        rows = (self.arange[:slots] if isinstance(slots, int) else slots)[:, None].expand_as(pos)
        causal = torch.arange(keys, device=ids.device)[None, None, None, :] > pos[:, None, :, None]
        outside = torch.arange(frames, device=ids.device)[None, :] >= self.frames[at, None]
        outside = outside[:, None, None, :]
        captured: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = self._split(a.q_proj(h) * a.scaling)
            self.k[i][rows, :, pos] = a.k_proj(h).view(*pos.shape, self.heads, self.head_dim)
            self.v[i][rows, :, pos] = a.v_proj(h).view(*pos.shape, self.heads, self.head_dim)
            k, v = self.k[i, at, :, :keys], self.v[i, at, :, :keys]
            x = x + a.out_proj(self._merge(_attend(q, k.transpose(-1, -2), v, causal)[0]))

            a = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = self._split(a.q_proj(h) * a.scaling)
            k, v = self.xk[i, at, :, :, :frames], self.xv[i, at, :, :frames]
            out, weights = _attend(q, k, v, outside)
            x = x + a.out_proj(self._merge(out))
            heads = [head for layer_index, head in self.align if layer_index == i]
            if heads:
                captured.append(weights[:, heads])

            h = layer.final_layer_norm(x)
            x = x + layer.fc2(F.gelu(layer.fc1(h)))
        attention = (
            torch.cat(captured, dim=1) if captured else x.new_zeros(ids.shape[0], 0, ids.shape[1], frames)
        )
        return self.norm(x), attention

    def _choose(
        self, logits: torch.Tensor, attention: torch.Tensor, width: int, frames: int, full: bool
    ) -> None:
        """Apply the logit rules to every row at once, pick the best token, and keep its
        log-probability and the alignment heads' attention in the row's slot. ``full`` is false
        when no row decodes timestamps or takes its first step: the rules are then one mask."""
        tb = self.tb
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
            ts_wins = self.timestamps[:width] & (ts_mass > text_best)
            take_ts = ts_wins | (ts_best > text_best)
            choice = torch.where(take_ts, ts_choice + tb, text_choice)
            best = torch.where(take_ts, ts_best, text_best)
            chosen = best - torch.where(ts_wins, ts_mass, torch.logaddexp(text_mass, ts_mass))
            if self.record_margins:
                logits = logits.masked_fill(ts_wins[:, None] & (self.vocab_ids < tb), NEG)
        else:
            choice, chosen = text_choice, text_best - text_mass
        rows, step = self.arange[:width], self.count[:width].clamp(max=self.logprobs.shape[1] - 1)
        self.logprobs[rows, step] = chosen
        if self.record_margins:
            top = logits.topk(2, dim=-1).values
            self.margins[rows, step] = top[:, 0] - top[:, 1]
        self.attention[rows, :, step, :frames] = attention.to(self.attention.dtype)
        # the chosen token becomes the row's history for the next step's rules; a finished row
        # (waiting for release) keeps its results
        running = (self.status[:width] & DONE) == 0
        self.history[rows, step] = torch.where(running, choice, self.history[rows, step])
        last = self.last[:width]
        self.prev[:width] = torch.where(self.count[:width] >= 1, last, self.prev[:width])
        self.stamp[:width] = torch.where(choice >= tb, choice, self.stamp[:width])
        self.count[:width] += running.long()
        self.first[:width] = False
        self.choice[:width] = choice
        self._judge(choice, running, width)

    def _judge(self, choice: torch.Tensor, running: torch.Tensor, width: int) -> None:
        """Mark the rows this step finished: end of text, budget spent, or a repetition loop
        (``decode.is_looping`` over the chosen tokens, for all rows at once)."""
        ended = running & (choice == self.eot)
        grown = running & ~ended
        tokens = self.count[:width]
        spent = grown & (tokens >= self.budget[:width])
        looped = grown & ~spent & self._looping(tokens, width)
        flags = (ended | spent | looped).long() * DONE + ended.long() * ENDED + looped.long() * LOOPED
        self.status[:width] |= flags

    def _looping(self, tokens: torch.Tensor, width: int) -> torch.Tensor:
        """Whether each row's last ``n`` tokens were said ``LOOP_REPEATS`` times in a row, for
        some ``n ≤ LOOP_MAX_NGRAM``: token ``L-1-j`` equals token ``L-1-j-n`` for ``j < 3n``."""
        a, b, unused, shortest = self._loop_pairs
        back = (tokens[:, None] - 1 - self._loop_back).clamp(min=0)
        recent = self.history[:width].gather(1, back)  # recent[:, j] is token L-1-j
        same = (recent[:, a] == recent[:, b]) | unused
        return (same.all(-1) & (tokens[:, None] >= shortest)).any(-1)

    def _rule_mask(self, width: int) -> torch.Tensor:
        """(width, vocab): True where OpenAI's rules forbid a token at this step."""
        idx, tb = self.vocab_ids, self.tb
        first, ts = self.first[:width, None], self.timestamps[:width, None]
        last, prev, stamp = self.last[:width, None], self.prev[:width, None], self.stamp[:width, None]
        count = self.count[:width, None]
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
            | (idx > self.last_allowed[:width, None])  # no timestamp past the audio
        )
        mask: torch.Tensor = self.suppress | (first & self.blank) | torch.where(ts, ts_rules, is_ts)
        return mask

    # ---------------- admission ----------------
    def _languages(self, slots: torch.Tensor, options: list[DecodeOptions]) -> list[str | None]:
        """Each row's language; "auto" is detected from the logits after <|startoftranscript|>."""
        if not self.wm.multilingual:
            return [None] * len(options)
        languages: list[str | None] = [o.language or "en" for o in options]
        auto = [j for j, o in enumerate(options) if o.language == "auto"]
        if auto:
            sp = self.tok.special
            codes = list(sp.languages)
            index = slots[auto]
            ids = torch.full((len(auto), 1), sp.sot, device=index.device)
            hidden, _ = self._forward(ids, torch.zeros_like(ids), index, 1, int(self.frames[index].max()))
            lang_ids = torch.tensor([sp.languages[c] for c in codes], device=index.device)
            best = self.proj(hidden[:, 0]).float()[:, lang_ids].argmax(-1).tolist()
            for j, b in zip(auto, best, strict=True):
                languages[j] = codes[b]
        return languages

    def _prefill(self, slots: list[int]) -> None:
        """Write the K/V of each row's prefix into its slot, set up its decode state (the last
        prefix token is fed again by the first step) and read its no-speech probability after
        <|startoftranscript|>."""
        sp, dev = self.tok.special, self.wm.device
        prefixes, budgets = [], []
        for i in slots:
            row = self.rows[i]
            prompt = list(row.options.prompt)[-(self.max_tokens // 2 - 1) :]
            sot = sot_sequence(self.wm, row.language, row.options.timestamps, row.options.task)
            prefixes.append(([sp.sot_prev, *prompt] if prompt else []) + sot)
            budgets.append(min(row.options.max_tokens, self.max_tokens - len(prefixes[-1]) - 1))
        self._unstepped += len(slots)
        index = torch.tensor(slots, device=dev)
        self.last[index] = torch.tensor([p[-1] for p in prefixes], device=dev)
        self.pos[index] = torch.tensor([len(p) - 1 for p in prefixes], device=dev)
        self.count[index] = 0
        self.prev[index] = -1
        self.stamp[index] = -1
        self.status[index] = 0
        self.budget[index] = torch.tensor(budgets, device=dev)
        self.first[index] = True
        self.timestamps[index] = torch.tensor([self.rows[i].options.timestamps for i in slots], device=dev)
        self.last_allowed[index] = torch.tensor(
            [self.tb + self.rows[i].options.num_frames // 2 for i in slots], device=dev
        )
        length = max(len(p) for p in prefixes)
        ids = torch.full((len(slots), length), sp.eot, dtype=torch.long)
        pos = torch.full(
            (len(slots), length), self.max_tokens - 1, dtype=torch.long
        )  # padding: a scratch position
        for j, p in enumerate(prefixes):
            ids[j, : len(p)] = torch.tensor(p)
            pos[j, : len(p)] = torch.arange(len(p))
        hidden, _ = self._forward(ids.to(dev), pos.to(dev), index, length, int(self.frames[index].max()))
        at = torch.tensor([p.index(sp.sot) for p in prefixes], device=dev)
        logits = self.proj(hidden[torch.arange(len(slots), device=dev), at]).float()
        for i, p in zip(slots, logits.softmax(-1)[:, sp.no_speech].tolist(), strict=True):
            self.rows[i].no_speech = p

    # ---------------- CUDA graphs ----------------
    def capture(self) -> None:
        """Record the step of every bucket up to the capacity as a CUDA graph (CUDA only)."""
        if not self.static or self.wm.device.type != "cuda":
            raise RuntimeError("graph capture needs static shapes on a CUDA device")
        with torch.inference_mode():
            stream = torch.cuda.Stream(self.wm.device)  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream(self.wm.device))
            with torch.cuda.stream(stream):
                for width in BUCKETS:
                    if width > self.capacity:
                        break
                    self._decode(width)  # warm-up: allocations and kernel choice happen outside the graph
            torch.cuda.current_stream(self.wm.device).wait_stream(stream)
            for width in BUCKETS:
                if width > self.capacity:
                    break
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self._decode(width)
                self._graphs[width] = graph

    # ---------------- shapes ----------------
    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) → (B, heads, T, head_dim)."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        """(B, heads, T, head_dim) → (B, T, d)."""
        return x.transpose(1, 2).flatten(2)


def _attend(
    q: torch.Tensor, kt: torch.Tensor, v: torch.Tensor, masked: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with explicit weights (the alignment heads need them), keys given transposed;
    ``masked`` is True where a key may not be seen."""
    weights = (q @ kt).masked_fill(masked, NEG).softmax(-1)
    return weights @ v, weights


def _loop_pairs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index pairs for ``Runner._looping``: for each n-gram length n (rows) the comparisons
    j ↔ j + n for j < 3n, padding marked unused, and the fewest tokens a loop of n needs."""
    width = (LOOP_REPEATS - 1) * LOOP_MAX_NGRAM
    j = torch.arange(width)[None, :]
    n = torch.arange(1, LOOP_MAX_NGRAM + 1)[:, None]
    unused = j >= (LOOP_REPEATS - 1) * n
    a = torch.where(unused, 0, j).expand(LOOP_MAX_NGRAM, width)
    b = torch.where(unused, 0, j + n)
    return a.to(device), b.to(device), unused.to(device), (LOOP_REPEATS * n[:, 0]).to(device)


def _bucket(n: int) -> int:
    for b in BUCKETS:
        if b >= n:
            return b
    return -(-n // BUCKETS[-1]) * BUCKETS[-1]

"""The persistent batch: every slot's decode state in preallocated tensors on the device.

vLLM's ``InputBatch`` for Whisper's decoder. A reading owns one slot (one row of every tensor
here) from admission to release; occupied slots stay packed at ``0..n-1``, so when a row leaves,
the last row moves into its slot. Each per-slot tensor is declared once, in ``__init__``, with
the dimension that indexes slots and the dimensions a row fills only part of (its keys, its
encoder frames, its steps): ``move`` and ``reset`` loop over those declarations, so a new piece
of state is one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_FRAMES = 1500  # encoder positions of a 30-second window
# a row's status word, written on the device by every step
DONE, ENDED, LOOPED = 1, 2, 4  # ENDED: chose end of text (rather than stopped by budget or loop)


@dataclass(frozen=True)
class Shape:
    """The sizes of the decoder the batch holds state for."""

    layers: int
    heads: int
    head_dim: int
    max_tokens: int  # the decoder's positions (448 for Whisper)
    align_heads: int  # cross-attention heads kept for word alignment


@dataclass(frozen=True)
class _Declared:
    tensor: torch.Tensor
    slot_dim: int
    used: tuple[tuple[int, str], ...]  # (dimension, extent): filled only up to the row's extent


class PersistentBatch:
    """Per-slot tensors: the self-attention K/V cache, the cross-attention K/V of each row's
    window, and the small state a step reads and writes (position, last token, counts, status,
    the chosen tokens with their log-probabilities and alignment attention)."""

    def __init__(
        self,
        slots: int,
        shape: Shape,
        device: torch.device,
        dtype: torch.dtype,
        margins: bool = False,
    ) -> None:
        self.capacity, self.device = slots, device
        self._declared: list[_Declared] = []
        n, h, d, t = shape.layers, shape.heads, shape.head_dim, shape.max_tokens
        self.budget_len = t // 2 + 1  # the most tokens a row may generate, plus end of text
        new = self.declare
        self.k = new((n, slots, h, t, d), dtype, slot_dim=1, used={3: "keys"})
        self.v = new((n, slots, h, t, d), dtype, slot_dim=1, used={3: "keys"})
        # cross-attention keys are stored transposed (head_dim × frames): a step's q·K is then a
        # plain batched product over contiguous rows, the step's largest memory read
        self.xk = new((n, slots, h, d, MAX_FRAMES), dtype, slot_dim=1, used={4: "frames"})
        self.xv = new((n, slots, h, MAX_FRAMES, d), dtype, slot_dim=1, used={3: "frames"})
        attention = (slots, shape.align_heads, self.budget_len, MAX_FRAMES)
        self.attention = new(attention, torch.float16, used={2: "steps", 3: "frames"})
        self.history = new((slots, self.budget_len), torch.long, used={1: "steps"})  # the chosen tokens
        self.logprobs = new((slots, self.budget_len), torch.float32, used={1: "steps"})
        # best minus second-best logit of each step: only tests ask for it (to tell near-ties)
        self.margins = new((slots, self.budget_len), torch.float32, used={1: "steps"}) if margins else None
        self.frames = new((slots,), torch.long, fill=1)  # encoder positions of the slot's window
        self.pos = new((slots,), torch.long)  # position of the token fed next
        self.last = new((slots,), torch.long)  # the token fed next
        self.count = new((slots,), torch.long)  # tokens generated so far
        self.prev = new((slots,), torch.long, fill=-1)  # the token before ``last`` among generated ones
        self.stamp = new((slots,), torch.long, fill=-1)  # the last timestamp token generated
        self.budget = new((slots,), torch.long)  # the most tokens the row may generate
        self.status = new((slots,), torch.long)  # DONE | ENDED | LOOPED
        self.first = new((slots,), torch.bool)  # the row's next step is its first
        self.timestamps = new((slots,), torch.bool)  # the row decodes timestamps
        self.last_allowed = new((slots,), torch.long)  # the latest timestamp token the audio allows
        self.choice = new((slots,), torch.long)  # the token each row chose at the last step
        self.arange = torch.arange(slots, device=device)

    def declare(
        self,
        size: tuple[int, ...],
        dtype: torch.dtype,
        slot_dim: int = 0,
        used: dict[int, str] | None = None,
        fill: int = 0,
    ) -> torch.Tensor:
        """A new per-slot tensor, moved and reset with its row from now on."""
        tensor = torch.full(size, fill, device=self.device, dtype=dtype)
        self._declared.append(_Declared(tensor, slot_dim, tuple((used or {}).items())))
        return tensor

    def move(self, src: int, dst: int) -> None:
        """Copy slot ``src``'s state into ``dst`` (only the parts the row uses)."""
        extent = {
            "keys": int(self.pos[src]) + 1,
            "frames": int(self.frames[src]),
            "steps": min(int(self.count[src]) + 1, self.budget_len),
        }
        for declared in self._declared:
            to: list[int | slice] = [slice(None)] * declared.tensor.dim()
            to[declared.slot_dim] = dst
            for dim, name in declared.used:
                to[dim] = slice(0, extent[name])
            at = list(to)
            at[declared.slot_dim] = src
            declared.tensor[tuple(to)] = declared.tensor[tuple(at)]

    def reset(self, slots: list[int], **values: torch.Tensor | int | bool) -> None:
        """Set the named per-slot state of ``slots`` (one value each, or one for all)."""
        index = torch.tensor(slots, device=self.device)
        for name, value in values.items():
            getattr(self, name)[index] = value

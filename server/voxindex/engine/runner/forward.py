"""Whisper's decoder forward pass over the persistent batch's KV cache (gpt-fast's ``model.py``).

Linear layers are called as torch modules (plain or int8-quantized ``Linear``); everything else
(embeddings, norms, attention) is written here against the checkpoint's tensors. Self-attention
K/V are written in place at each row's own positions; cross-attention K/V are stored once per
slot at admission.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from voxindex.engine.runner.batch import PersistentBatch, Shape
from voxindex.models.whisper import WhisperModel

NEG = float("-inf")


class DecoderForward:
    def __init__(self, model: WhisperModel) -> None:
        cfg = model.model.config
        dec = model.model.model.decoder
        self.layers = list(dec.layers)
        self.embed, self.positions, self.norm = dec.embed_tokens, dec.embed_positions.weight, dec.layer_norm
        self.proj = model.model.proj_out
        self.heads = int(cfg.decoder_attention_heads)
        self.head_dim = int(cfg.d_model) // self.heads
        self.align = model.alignment_heads
        self.shape = Shape(
            len(self.layers), self.heads, self.head_dim, int(cfg.max_target_positions), len(self.align)
        )

    def store_cross(self, batch: PersistentBatch, slots: torch.Tensor, encoded: torch.Tensor) -> None:
        """The cross-attention K/V of each row's encoder output (B, frames, d), into its slot."""
        frames = encoded.shape[1]
        for i, layer in enumerate(self.layers):
            a = layer.encoder_attn
            batch.xk[i, slots, :, :, :frames] = self._split(a.k_proj(encoded)).transpose(-1, -2)
            batch.xv[i, slots, :, :frames] = self._split(a.v_proj(encoded))
        batch.frames[slots] = frames

    def __call__(
        self,
        batch: PersistentBatch,
        ids: torch.Tensor,
        pos: torch.Tensor,
        slots: int | torch.Tensor,
        keys: int,
        frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder over ``ids`` (rows, q) at positions ``pos`` for ``slots`` (``0..slots-1``, read
        as views, or any slot indices, gathered): writes their K/V into the cache and attends to
        cache positions ``< keys`` and ``≤ pos``. Returns the final hidden states and the
        alignment heads' cross-attention (rows, heads, q, frames)."""
        at = slice(0, slots) if isinstance(slots, int) else slots
        x = self.embed(ids) + self.positions[pos]
        rows = (batch.arange[:slots] if isinstance(slots, int) else slots)[:, None].expand_as(pos)
        causal = torch.arange(keys, device=ids.device)[None, None, None, :] > pos[:, None, :, None]
        outside = torch.arange(frames, device=ids.device)[None, :] >= batch.frames[at, None]
        outside = outside[:, None, None, :]
        captured: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = self._split(a.q_proj(h) * a.scaling)
            batch.k[i][rows, :, pos] = a.k_proj(h).view(*pos.shape, self.heads, self.head_dim)
            batch.v[i][rows, :, pos] = a.v_proj(h).view(*pos.shape, self.heads, self.head_dim)
            k, v = batch.k[i, at, :, :keys], batch.v[i, at, :, :keys]
            x = x + a.out_proj(self._merge(_attend(q, k.transpose(-1, -2), v, causal)[0]))

            a = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = self._split(a.q_proj(h) * a.scaling)
            k, v = batch.xk[i, at, :, :, :frames], batch.xv[i, at, :, :frames]
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

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden).float()  # type: ignore[no-any-return]

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

"""Whisper's encoder over a batch of log-mel windows (one call per admission, not per token)."""

from __future__ import annotations

import torch

from voxindex.engine.mel import N_FRAMES
from voxindex.models.whisper import WhisperModel


@torch.inference_mode()
def encode(model: WhisperModel, mels: torch.Tensor, frames: int = N_FRAMES) -> torch.Tensor:
    """Encoder over the first ``frames`` mel frames (even, ≤ 3000) of every row: (B, frames/2, d).

    Whisper is trained on 30-second windows; live streams use shorter ones (≥ 15 s keeps
    accuracy, see BENCHMARKS.md) because encoder cost grows with the window.
    """
    enc = model.model.model.encoder
    x = mels[:, :, : frames - frames % 2].to(model.device, model.encoder_dtype or model.dtype)
    h = torch.nn.functional.gelu(enc.conv1(x))
    h = torch.nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
    h = h + enc.embed_positions.weight[: h.shape[1]]
    for layer in enc.layers:
        out = layer(h, None)
        h = out[0] if isinstance(out, tuple) else out
    return enc.layer_norm(h).to(model.dtype)  # type: ignore[no-any-return]

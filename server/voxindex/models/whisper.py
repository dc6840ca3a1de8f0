"""One loaded Whisper model: the checkpoint's modules with what the engine needs beside them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import WhisperForConditionalGeneration

from voxindex.models.tokenizer import WhisperTokenizer


@dataclass
class WhisperModel:
    """Everything the engine needs about one loaded model. The scheduler is its only user."""

    name: str
    model: WhisperForConditionalGeneration
    tokenizer: WhisperTokenizer
    device: torch.device
    dtype: torch.dtype
    alignment_heads: list[tuple[int, int]]
    suppress_tokens: list[int]
    compute_type: str = "float32"
    encoder_dtype: torch.dtype | None = None  # the encoder's own dtype when it differs ("bfloat16")

    @property
    def multilingual(self) -> bool:
        return int(self.model.config.vocab_size) >= 51865

    @property
    def languages(self) -> frozenset[str]:
        """The language codes the model reads (and, multilingual, translates into English)."""
        return frozenset(self.tokenizer.special.languages) if self.multilingual else frozenset({"en"})

    @property
    def n_mels(self) -> int:
        return int(self.model.config.num_mel_bins)

    @property
    def max_target_positions(self) -> int:
        return int(self.model.config.max_target_positions)

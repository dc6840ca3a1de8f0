"""Whisper's log-mel front end, batched in torch (matches OpenAI's ``log_mel_spectrogram``)."""

from __future__ import annotations

import torch
from transformers.audio_utils import mel_filter_bank

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
N_FRAMES = N_SAMPLES // HOP_LENGTH
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH
TOKENS_PER_SECOND = FRAMES_PER_SECOND / 2  # the encoder's conv stride halves the frame rate


class LogMel:
    """Computes padded 30-second log-mel windows for a batch of clips on one device."""

    def __init__(self, n_mels: int, device: torch.device) -> None:
        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.filters = torch.from_numpy(filters.T).to(device=device, dtype=torch.float32)
        self.window = torch.hann_window(N_FFT, device=device)
        self.device = device

    def __call__(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """``clips``: 1-D float32 tensors of at most 30 s. Returns (B, n_mels, 3000), zero-padded audio."""
        batch = torch.zeros(len(clips), N_SAMPLES, device=self.device)
        for i, clip in enumerate(clips):
            n = min(clip.numel(), N_SAMPLES)
            batch[i, :n] = clip[:n].to(self.device)
        stft = torch.stft(batch, N_FFT, HOP_LENGTH, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = self.filters @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0

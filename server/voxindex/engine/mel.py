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
    """Log-mel windows for a batch of clips, computed on the model's device.

    Only the frames the encoder reads are computed (a 15-second live window costs half a
    30-second one), and they equal the first frames of OpenAI's padded 30-second spectrogram:
    the audio is padded with zeros half an FFT past the last frame, so no frame sees the STFT's
    edge padding, and the padded frames of a 30-second window never set its peak. On CUDA the
    batch is assembled in pinned host memory and copied in one non-blocking transfer.
    """

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
        self._pinned = device.type == "cuda"
        self._host = torch.zeros(0, 0)
        self._copied: torch.cuda.Event | None = None  # the last copy out of ``_host``

    def __call__(self, clips: list[torch.Tensor], frames: int = N_FRAMES) -> torch.Tensor:
        """``clips``: 1-D float32 CPU tensors of at most 30 s. Returns (B, n_mels, frames)."""
        samples = frames * HOP_LENGTH + N_FFT // 2
        host = self._batch(len(clips), samples)
        for i, clip in enumerate(clips):
            n = min(clip.numel(), frames * HOP_LENGTH)
            host[i, :n] = clip[:n]
        batch = host.to(self.device, non_blocking=True)
        if self._pinned:
            self._copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
            self._copied.record()
        stft = torch.stft(batch, N_FFT, HOP_LENGTH, window=self.window, return_complex=True)
        power = stft[..., :frames].abs() ** 2
        mel = self.filters @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0

    def _batch(self, rows: int, samples: int) -> torch.Tensor:
        """A zeroed (rows, samples) host buffer; on CUDA pinned, reused once its last copy is done."""
        if not self._pinned:
            return torch.zeros(rows, samples)
        if self._copied is not None:
            self._copied.synchronize()
        if self._host.shape[0] < rows or self._host.shape[1] < samples:
            self._host = torch.zeros(
                max(rows, self._host.shape[0]), max(samples, self._host.shape[1]), pin_memory=True
            )
        host = self._host[:rows, :samples]
        host.zero_()
        return host

"""The speaker encoder: Resemblyzer's GE2E network, its weights read from the PyPI wheel.

GE2E (Wan et al. 2018, "Generalized End-to-End Loss for Speaker Verification"): a 3-layer LSTM
over 40-channel mel power frames (25 ms windows, 10 ms hop), whose last hidden state becomes a
256-dimensional, non-negative, L2-normed embedding; same voice → high cosine. Resemblyzer ships
the trained weights (17 MB) inside its wheel, so it installs from a package index and runs with
no model hub. Only the weights file is read: its own preprocessing (librosa, webrtcvad) is
replaced by the torch front end below, batched and on the model's device, and the package is
installed without those dependencies (``pip install --no-deps resemblyzer``, scripts/setup.sh).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers.audio_utils import mel_filter_bank

from voxindex.audio import SAMPLE_RATE
from voxindex.errors import SpeakersUnavailableError

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
HIDDEN = 256
TARGET_DBFS = -30.0  # Resemblyzer's volume normalization (raised to it, never lowered)


def weights_path() -> Path:
    """The wheel's ``pretrained.pt``, found without importing the package (its ``__init__``
    imports librosa, which is not installed)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise SpeakersUnavailableError(
            "speaker labels need the Resemblyzer weights: pip install --no-deps resemblyzer==0.1.4"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


class SpeakerEncoder(torch.nn.Module):
    def __init__(self, device: torch.device | None = None) -> None:
        super().__init__()
        self.device = device or torch.device("cpu")
        self.lstm = torch.nn.LSTM(N_MELS, HIDDEN, 3, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=N_MELS,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )  # librosa's defaults, which Resemblyzer used
        self.to(self.device).eval()
        self.filters = torch.from_numpy(filters.T).float().to(self.device)
        self.window = torch.hann_window(N_FFT, device=self.device)

    @torch.inference_mode()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, samples) float32 16 kHz clips of one length → (B, 256) unit embeddings."""
        x = clips.to(self.device, torch.float32)
        rms = x.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-5)
        gain = (10 ** (TARGET_DBFS / 20) / rms).clamp_min(1.0)  # increase only
        stft = torch.stft(
            x * gain, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )
        mel = (self.filters @ stft.abs().pow(2)).transpose(1, 2)  # (B, frames, 40): power, not log
        _, (hidden, _) = self.lstm(mel)
        raw = torch.relu(self.linear(hidden[-1]))
        return torch.nn.functional.normalize(raw, dim=1)

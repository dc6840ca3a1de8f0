"""Pipecat's Smart Turn v3.2 (BSD-2-Clause): the probability that speech which just stopped
ended a turn, from how it sounded (the turn's last 8 s of audio), batched across streams.

Its weights are the ONNX file inside the ``pipecat-ai`` wheel, installed without its runtime
(``pip install --no-deps pipecat-ai``, scripts/setup.sh); only the file is read. The features
are Whisper's log-mel of an 8-second window (the clip right-aligned, zero-padded in front and
normalized to zero mean and unit variance), computed in torch on the engine's device. The
network runs in ONNX Runtime: on CUDA where its GPU build is installed, else on the CPU, one
call for every stream waiting on a decision.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

from voxindex.audio import SAMPLE_RATE, Float32Array

log = logging.getLogger("voxindex.engine")

WINDOW_S = 8  # Smart Turn reads the turn's last 8 s
WINDOW = WINDOW_S * SAMPLE_RATE
N_FFT, HOP, FRAMES = 400, 160, 800
WEIGHTS = ("audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx")


def weights_path() -> Path | None:
    """The ONNX file of the installed ``pipecat-ai`` wheel, found without importing pipecat."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*WEIGHTS)
    return path if path.is_file() else None


class SmartTurn:
    def __init__(self, path: Path, device: torch.device, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.device = device
        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=80,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self._filters = torch.from_numpy(filters.T).to(device, torch.float32)
        self._window = torch.hann_window(N_FFT, device=device)

    @classmethod
    def load(cls, device: torch.device, threads: int = 1) -> SmartTurn | None:
        """The installed model, or None (logged): turns are then judged without it."""
        path = weights_path()
        if path is None:
            log.warning(
                "Smart Turn's weights are not installed (pip install --no-deps pipecat-ai==1.14.0): "
                "ends of turn are judged from the words and the silence only"
            )
            return None
        return cls(path, device, threads)

    def __call__(self, clips: list[Float32Array]) -> list[float]:
        """The end-of-turn probability of each clip (16 kHz, ending where the decision is made)."""
        if not clips:
            return []
        out = self._session.run(None, {"input_features": self.features(clips)})[0]
        return [float(p) for p in np.asarray(out, np.float32).reshape(-1)]

    @torch.inference_mode()
    def features(self, clips: list[Float32Array]) -> np.ndarray:
        """(clips, 80, 800) log-mel features, as ``WhisperFeatureExtractor(chunk_length=8)``
        computes them for a clip padded in front to 8 s (pipecat's smart-turn recipe)."""
        batch = torch.zeros(len(clips), WINDOW)
        for i, clip in enumerate(clips):
            tail = clip[-WINDOW:]
            batch[i, WINDOW - tail.size :] = torch.from_numpy(np.ascontiguousarray(tail))
        x = batch.to(self.device)
        x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + 1e-7)
        stft = torch.stft(x, N_FFT, HOP, window=self._window, pad_mode="reflect", return_complex=True)
        mel = self._filters @ (stft[..., :FRAMES].abs() ** 2)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        return ((log_spec + 4.0) / 4.0).float().cpu().numpy()

"""Silero VAD, batched across streams, and the per-stream endpointer (speech starts and ends).

Silero's 16 kHz network (its TorchScript export, from the ``silero-vad`` wheel) takes its
recurrent state as an input, so one model serves every stream: each step runs one call per
32 ms chunk index for all streams that have that chunk, with each stream's own state gathered
in and scattered back. It runs on the engine's device: on a GPU a thousand streams' chunks
cost one small batched call, where on one CPU thread they cost over a second per second of
audio (BENCHMARKS.md, "GPU"). On a CPU a call of few rows (a CPU's usual load) runs in ONNX
Runtime instead, Silero's own export of the same weights without control flow: probabilities
within 3e-6 of the TorchScript network's, at half its cost per call up to ~16 rows, where
TorchScript's batching starts to win (BENCHMARKS.md, "Host work a GPU does not shrink").

Importing ``silero_vad`` sets torch to one thread for the whole process (its ``model.py``); the
engine has always run so on a CPU, and its tuning assumes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from voxindex.audio import SAMPLE_RATE, Float32Array

log = logging.getLogger("voxindex.engine")

CHUNK = 512  # samples per VAD decision at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees
CHUNK_S = CHUNK / SAMPLE_RATE
START_THRESHOLD = 0.5
STOP_THRESHOLD = 0.35
START_CHUNKS = 3  # ~100 ms of speech before an utterance starts: clicks and pops do not count
ONNX_FILE = "silero_vad_op18_ifless.onnx"  # the same network for ONNX Runtime (in the wheel)
ONNX_MAX_ROWS = 16  # on a CPU, calls of up to this many streams' chunks go to ONNX Runtime


@dataclass
class VadState:
    """One stream's recurrent state and the samples not yet making a whole chunk."""

    state: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((2, 1, 128), np.float32))
    context: Float32Array = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    pending: Float32Array = field(default_factory=lambda: np.zeros(0, np.float32))


class Vad:
    """Speech probabilities for many streams' new audio, in as few model calls as possible."""

    def __init__(self, device: torch.device | None = None) -> None:
        path = str(resources.files("silero_vad.data").joinpath("silero_vad.jit"))
        self.device = device or torch.device("cpu")
        try:
            self._net = self._load(path, self.device)
        except RuntimeError as e:  # a device the TorchScript graph cannot run on
            log.warning("VAD cannot run on %s (%s); it runs on the CPU", self.device, e)
            self.device = torch.device("cpu")
            self._net = self._load(path, self.device)
        self._onnx = _onnx_session() if self.device.type == "cpu" else None

    @staticmethod
    @torch.inference_mode()
    def _load(path: str, device: torch.device) -> torch.jit.ScriptModule:
        # the 16 kHz network of Silero's module (the module itself wraps it with hidden state)
        net: torch.jit.ScriptModule = torch.jit.load(path, map_location=device)._model  # type: ignore[no-untyped-call]
        net.eval()
        net(torch.zeros(1, CONTEXT + CHUNK, device=device), torch.zeros(2, 1, 128, device=device))
        return net

    def __call__(self, states: list[VadState], audio: list[Float32Array]) -> list[Float32Array]:
        """Append ``audio[i]`` to stream i and return one probability per whole new chunk."""
        chunks: list[Float32Array] = []
        for st, new in zip(states, audio, strict=True):
            data = np.concatenate([st.pending, new]) if st.pending.size else new
            n = data.size // CHUNK
            st.pending = data[n * CHUNK :].copy()
            chunks.append(data[: n * CHUNK].reshape(n, CHUNK))
        probs = [np.zeros(len(c), np.float32) for c in chunks]
        for t in range(max((len(c) for c in chunks), default=0)):
            rows = [i for i, c in enumerate(chunks) if len(c) > t]
            x = np.stack([np.concatenate([states[i].context, chunks[i][t]]) for i in rows])
            state = np.concatenate([states[i].state for i in rows], axis=1)
            out, new_state = self._run(x, state)
            for k, i in enumerate(rows):
                probs[i][t] = out[k, 0]
                states[i].state = new_state[:, k : k + 1]
                states[i].context = x[k, -CONTEXT:]
        return probs

    @torch.inference_mode()
    def _run(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """One chunk for each row: (probabilities (rows, 1), new state (2, rows, 128))."""
        if self._onnx is not None and x.shape[0] <= ONNX_MAX_ROWS:
            feed = {"input": x, "state": state, "sr": np.array(SAMPLE_RATE, np.int64)}
            out, new_state = self._onnx.run(None, feed)
            return out, new_state
        out, new_state = self._net(
            torch.from_numpy(x).to(self.device, non_blocking=True),
            torch.from_numpy(state).to(self.device, non_blocking=True),
        )
        return out.float().cpu().numpy(), new_state.float().cpu().numpy()


def _onnx_session() -> Any:
    """Silero's ONNX export in ONNX Runtime, or None where either is missing (a bare GPU
    machine's benchmark bundle has neither): TorchScript then takes every call."""
    onnx = resources.files("silero_vad.data").joinpath(ONNX_FILE)
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if not onnx.is_file():
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the export carries unused initializers: a warning each
    return ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])


@dataclass
class Endpointer:
    """Turns per-chunk probabilities into speech start and end times, with hysteresis.

    ``endpointing_s`` of continuous silence after speech ends an utterance.
    """

    endpointing_s: float
    threshold: float = START_THRESHOLD  # a chunk this likely speech starts (or holds) speech
    in_speech: bool = False
    speech_start: float | None = None
    last_voice: float = 0.0
    _run: int = 0
    _run_start: float = 0.0

    def update(self, prob: float, chunk_end: float) -> tuple[float | None, float | None]:
        """Feed one chunk; return (speech started at, speech ended at), each None if not now."""
        started: float | None = None
        ended: float | None = None
        if not self.in_speech:
            if prob >= self.threshold:
                if self._run == 0:
                    self._run_start = chunk_end - CHUNK_S
                self._run += 1
                if self._run >= START_CHUNKS:
                    self.in_speech = True
                    self.speech_start = started = self._run_start
                    self.last_voice = chunk_end
            else:
                self._run = 0
        else:
            if prob >= max(0.05, self.threshold - (START_THRESHOLD - STOP_THRESHOLD)):  # hysteresis
                self.last_voice = chunk_end
            elif chunk_end - self.last_voice >= self.endpointing_s:
                self.in_speech = False
                self._run = 0
                ended = self.last_voice
        return started, ended

"""Decode cost per token step: the reference decoder (transformers' module, dynamic cache, rules
row by row) against the runner (static slot cache, batch rules), side by side in one run.

    .venv/bin/python benchmarks/decode_step.py [--compute-type int8|float32|float16]
        [--device cpu|cuda] [--batches 1,4,8,16] [--repeats 3] [--threads N] [--static] [--profile 8]

Same weights, same encoder outputs of real read speech (the LibriVox utterances, 3–7 s, each
in the executor's 15-second window), every row decoded to its end of text. A batch's decode
time covers the prefix prefill and every token step; ms/step is that time over the batch's
steps, tokens/s the tokens it produced over that time. The runner's figures exclude the
cross-attention K/V it computes once per admission (reported apart as "admit ms").

Two floors: compute (the step's multiply-adds at the measured rate of the output projection,
its largest matmul, in the same compute type) and memory (the bytes a step must read, every
row's cross-attention K/V, at the measured read bandwidth). runner/floor is the distance from
the larger of the two.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import recordings
from tests.engine.reference_decoder import Decoder

from voxindex.audio import SAMPLE_RATE, decode_file
from voxindex.engine.encoder import encode
from voxindex.engine.executor import window_frames
from voxindex.engine.mel import HOP_LENGTH, LogMel
from voxindex.engine.runner import Runner
from voxindex.engine.types import DecodeOptions, Hypothesis
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel


def sync(model: WhisperModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def batch_inputs(model: WhisperModel, batch: int) -> tuple[torch.Tensor, list[DecodeOptions]]:
    clips = [decode_file(r.path) for r in recordings("librivox")]
    audio = [clips[i % len(clips)] for i in range(batch)]
    frames = max(window_frames(a.size) for a in audio)
    mels = LogMel(model.n_mels, model.device)([torch.from_numpy(a) for a in audio])
    encoded = encode(model, mels, frames)
    options = [
        DecodeOptions(
            align=True,
            num_frames=min(frames, a.size // HOP_LENGTH + 1),
            max_tokens=min(224, 16 + int(a.size / SAMPLE_RATE * 8)),
        )
        for a in audio
    ]
    return encoded, options


def time_reference(
    model: WhisperModel, encoded: torch.Tensor, options: list[DecodeOptions]
) -> tuple[float, int, int]:
    decoder = Decoder(model)
    sync(model)
    t = time.perf_counter()
    hyps = decoder.decode(encoded, options)
    sync(model)
    return time.perf_counter() - t, steps_of(hyps), sum(len(h.tokens) for h in hyps)


def steps_of(hyps: list[Hypothesis]) -> int:
    return max(len(h.tokens) for h in hyps) + 1


def time_runner(
    runner: Runner, encoded: torch.Tensor, options: list[DecodeOptions]
) -> tuple[float, float, int, int]:
    """(admit s, decode s, steps, tokens)."""
    sync(runner.model)
    t0 = time.perf_counter()
    keys = runner.admit(encoded, options)
    sync(runner.model)
    t1 = time.perf_counter()
    left, steps, hyps = set(keys), 0, []
    while left:
        for key in runner.step():
            hyps.append(runner.release(key))
            left.discard(key)
        steps += 1
    sync(runner.model)
    return t1 - t0, time.perf_counter() - t1, steps, sum(len(h.tokens) for h in hyps)


def step_macs(model: WhisperModel, batch: int, frames: int, keys: int) -> float:
    cfg = model.model.config
    d, layers, vocab, ffn = (
        int(cfg.d_model),
        int(cfg.decoder_layers),
        int(cfg.vocab_size),
        int(cfg.decoder_ffn_dim),
    )
    per_layer = 4 * d * d + 2 * d * d + 2 * d * ffn + 2 * frames * d + 2 * keys * d
    return float(batch * (layers * per_layer + vocab * d))


def step_bytes(model: WhisperModel, batch: int, frames: int) -> float:
    """Bytes a step must read at least: every row's cross-attention K and V (they differ per
    row), plus every linear layer's weights once (1 byte per weight in int8)."""
    cfg = model.model.config
    d, layers = int(cfg.d_model), int(cfg.decoder_layers)
    element = torch.finfo(model.dtype).bits // 8
    weight = 1 if model.compute_type == "int8" else element
    ffn, vocab = int(cfg.decoder_ffn_dim), int(cfg.vocab_size)
    weights = layers * (6 * d * d + 2 * d * ffn) + vocab * d
    return float(batch * layers * 2 * frames * d * element + weights * weight)


def read_bandwidth(model: WhisperModel) -> float:
    """Bytes per second this machine reads from memory (a sum over 256 MiB)."""
    x = torch.ones(64 * 1024 * 1024, device=model.device)
    for _ in range(2):
        x.sum()
    sync(model)
    n, t = 10, time.perf_counter()
    for _ in range(n):
        x.sum()
    sync(model)
    return x.numel() * 4 * n / (time.perf_counter() - t)


def matmul_rate(model: WhisperModel, batch: int) -> float:
    """Multiply-adds per second of the output projection alone (the step's largest matmul) at
    this batch, in the model's own compute type: the rate the floor is computed at."""
    x = torch.randn(batch, int(model.model.config.d_model), device=model.device, dtype=model.dtype)
    proj = model.model.proj_out
    with torch.inference_mode():
        for _ in range(3):
            proj(x)
        sync(model)
        n, t = 20, time.perf_counter()
        for _ in range(n):
            proj(x)
        sync(model)
        seconds = (time.perf_counter() - t) / n
    return batch * x.shape[1] * int(model.model.config.vocab_size) / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--static", action="store_true", help="runner with static shapes (and graphs on CUDA)")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        help="also print torch.profiler's table for the runner at this batch",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device, compute_type=args.compute_type)
    batches = [int(b) for b in args.batches.split(",")]
    runner = Runner(model, slots=max(batches), static_shapes=args.static)
    if args.static and model.device.type == "cuda":
        runner.capture()
    print(
        f"# {args.model} {model.compute_type} on {model.device} "
        f"({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    header = "| batch | reference ms/step | runner ms/step | speed-up | reference tok/s | runner tok/s "
    print(header + "| admit ms | compute floor ms | memory floor ms | runner/floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    bandwidth = read_bandwidth(model)
    for batch in batches:
        encoded, options = batch_inputs(model, batch)
        time_reference(model, encoded, options)  # warm-up of both paths at this shape
        time_runner(runner, encoded, options)
        ref = [time_reference(model, encoded, options) for _ in range(args.repeats)]
        new = [time_runner(runner, encoded, options) for _ in range(args.repeats)]
        ref_s, ref_steps, ref_tokens = min(ref)
        admit_s, new_s, new_steps, new_tokens = min(new, key=lambda r: r[1])
        ref_step, new_step = ref_s / ref_steps, new_s / new_steps
        compute = step_macs(model, batch, encoded.shape[1], 40) / matmul_rate(model, batch)
        memory = step_bytes(model, batch, encoded.shape[1]) / bandwidth
        floor = max(compute, memory)
        print(
            f"| {batch} | {ref_step * 1e3:.2f} | {new_step * 1e3:.2f} | {ref_step / new_step:.2f}x | "
            f"{ref_tokens / ref_s:.0f} | {new_tokens / new_s:.0f} | {admit_s * 1e3:.1f} | "
            f"{compute * 1e3:.2f} | {memory * 1e3:.2f} | {new_step / floor:.1f}x |"
        )
    if args.profile:
        profile(runner, args.profile)


def profile(runner: Runner, batch: int) -> None:
    """Where a runner step's time goes: 10 steps of ``batch`` rows under torch.profiler."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    encoded, options = batch_inputs(runner.model, batch)
    keys = runner.admit(encoded, options)
    for _ in range(3):
        runner.step()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(10):
            runner.step()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12))
    for key in keys:
        runner.release(key)


if __name__ == "__main__":
    main()

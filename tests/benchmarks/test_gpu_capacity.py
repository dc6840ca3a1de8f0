"""The GPU capacity benchmark runs end to end before a GPU is lent: its bundle is built, split in
two halves that each fit the device tool's transfer, stashed and merged by the wrapper, and the
benchmark runs at toy sizes on the CPU (``--smoke``) through the same code a GPU run takes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import recordings
from voxindex.audio import decode_file
from voxindex.engine.executor import Executor
from voxindex.engine.reading import Job
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel

ROOT = Path(__file__).resolve().parents[2]
TRANSFER_MIB = 64  # the device tool's working-tree limit per call


@pytest.fixture(scope="module")
def stash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu")
    bundle, stash = out / "bundle", out / "stash"
    subprocess.run([sys.executable, "benchmarks/gpu_bundle.py", "--out", str(bundle)], cwd=ROOT, check=True)
    tree = sum(
        (ROOT / f).stat().st_size
        for f in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
        if (ROOT / f).is_file()
    )
    for half in ("a", "b"):
        size = sum(f.stat().st_size for f in (bundle / half).rglob("*") if f.is_file())
        assert tree + size < (TRANSFER_MIB - 8) * 2**20, (half, tree, size)  # with room to spare
    env = os.environ | {"GPU_BUNDLE": str(bundle), "VOXINDEX_GPU_STASH": str(stash), "PYTHON": sys.executable}
    for half in ("a", "b"):  # as the two device calls bring them: one half each
        only = bundle / "only" / half
        only.mkdir(parents=True)
        (only / half).symlink_to(bundle / half, target_is_directory=True)
        subprocess.run(
            ["bash", "benchmarks/gpu_capacity.sh", "stash"],
            cwd=ROOT,
            check=True,
            env=env | {"GPU_BUNDLE": str(only)},
        )
    return stash


def test_the_bundled_halves_are_tiny_en_itself(stash: Path, cache_dir: Path) -> None:
    """The fp16 checkpoint the GPU run loads transcribes real speech as the packaged model does."""
    bundled = load_model(str(stash / "tiny.en"), device="cpu", compute_type="float32")
    packaged = load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="float32")
    clip = decode_file(recordings("librivox")[0].path)

    def text(model: WhisperModel) -> str:
        return Executor(model, slots=1).run([Job(audio=clip, start=0.0)])[0].text

    assert text(bundled) == text(packaged) and len(text(packaged).split()) > 5


def test_the_benchmark_runs_end_to_end_on_the_cpu(stash: Path, tmp_path: Path) -> None:
    env = os.environ | {
        "GPU_BUNDLE": str(tmp_path / "none"),  # the halves come from the stash, as on the device
        "VOXINDEX_GPU_STASH": str(stash),
        "PYTHON": sys.executable,
        "OUT": str(tmp_path),
    }
    done = subprocess.run(
        [
            "bash",
            "benchmarks/gpu_capacity.sh",
            "run",
            "--smoke",
            "--models",
            "tiny.en,base",
            "--seconds",
            "6",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== GPU capacity on" in done.stdout
    report = json.loads((tmp_path / "gpu_capacity.json").read_text())
    tiny, base = report["models"]["tiny.en"], report["models"]["base"]
    assert tiny["weights"].startswith("real weights (fp16")  # from the two halves, not the package
    assert base["weights"].startswith("random weights") and 1.5 < base["tokens_per_speech_second"] < 6
    for rows in (tiny["batched"], tiny["unbatched"], base["batched"]):
        for row in rows:
            # every utterance finalized, on real weights and on scripted random ones alike
            assert row["utterances"] > 0 and row["missing_finals"] == 0 and not row["errors"]
            assert all(
                math.isfinite(v) and v >= 0 for v in (*row["first_s"].values(), *row["final_s"].values())
            )
            assert row["encoder_windows_per_s"] > 0 and row["decode_tokens_per_s"] > 0
    for model in (tiny, base):
        steps = model["kernels"]["decode_step_ms"]
        assert [s["batch"] for s in steps] == [1, 2] and all(s["eager_ms"] > 0 for s in steps)
        assert model["kernels"]["encoder"][0]["windows_15s_per_s"] > 0

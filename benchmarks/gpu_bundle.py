"""Prepare what ``benchmarks/gpu_capacity.sh`` needs on a bare GPU machine (PyTorch,
transformers, numpy and safetensors; no network), in two halves that each travel with the
working tree under the device tool's 64 MiB:

- ``a/``: tiny.en as a transformers checkpoint (config, generation config with its alignment
  heads and suppressed tokens, tokenizer) and its first weight shard (fp16: every tensor but
  the token embedding); the multilingual tokenizer and suppress list (random-weight models);
  Silero's TorchScript VAD network as a minimal ``silero_vad`` package (the wheel is 13 MB and
  needs nothing else of it);
- ``b/``: the second shard, the token embedding (fp16, 40 MB).

    .venv/bin/python benchmarks/gpu_bundle.py [--out .gpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib import resources
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from voxindex.config import Settings
from voxindex.loading import load_model
from voxindex.models.registry import Ct2Source, resolve

SECOND = "model.decoder.embed_tokens.weight"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def build(out: Path) -> dict[str, int]:
    a, b = out / "a", out / "b"
    for half in (a, b):
        shutil.rmtree(half, ignore_errors=True)
    tiny = a / "tiny.en"
    tiny.mkdir(parents=True)
    (b / "tiny.en").mkdir(parents=True)
    model = load_model("tiny.en", device="cpu", cache_dir=Settings().cache_dir, compute_type="float32")
    state = {k: v.half().contiguous() for k, v in model.model.state_dict().items() if k != "proj_out.weight"}
    first = {k: v for k, v in state.items() if k != SECOND}
    save_file(first, str(tiny / SHARDS[0]), metadata={"format": "pt"})
    save_file({SECOND: state[SECOND]}, str(b / "tiny.en" / SHARDS[1]), metadata={"format": "pt"})
    weight_map = {k: SHARDS[0] for k in first} | {SECOND: SHARDS[1]}
    total = sum(v.numel() * v.element_size() for v in state.values())
    (tiny / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    model.model.config.to_json_file(str(tiny / "config.json"))
    generation = {
        "alignment_heads": [list(h) for h in model.alignment_heads],
        "suppress_tokens": model.suppress_tokens,
        "decoder_start_token_id": model.tokenizer.special.sot,
        "eos_token_id": model.tokenizer.special.eot,
    }
    (tiny / "generation_config.json").write_text(json.dumps(generation))
    source = resolve("tiny.en")
    assert isinstance(source, Ct2Source)
    shutil.copy(source.tokenizer_json, tiny / "tokenizer.json")

    multilingual = resolve("base")
    assert isinstance(multilingual, Ct2Source)
    (a / "multilingual").mkdir()
    shutil.copy(multilingual.tokenizer_json, a / "multilingual" / "tokenizer.json")
    suppress = json.loads(multilingual.config_json.read_text())["suppress_ids"]
    (a / "multilingual" / "suppress.json").write_text(json.dumps(suppress))

    data = a / "site" / "silero_vad" / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text('"""Silero VAD\'s TorchScript network, from its wheel."""\n')
    (data / "__init__.py").write_text("")
    shutil.copy(str(resources.files("silero_vad.data").joinpath("silero_vad.jit")), data / "silero_vad.jit")
    return {half.name: sum(f.stat().st_size for f in half.rglob("*") if f.is_file()) for half in (a, b)}


def main() -> int:
    p = argparse.ArgumentParser(description="prepare the GPU benchmark's bundle")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / ".gpu")
    args = p.parse_args()
    for half, size in build(args.out).items():
        print(f"{args.out / half}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

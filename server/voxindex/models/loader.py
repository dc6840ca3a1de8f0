"""Load a Whisper model onto a device, converting CTranslate2 checkpoints once and caching them."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import WhisperConfig, WhisperForConditionalGeneration

from voxindex.errors import CheckpointFormatError, ModelNotFoundError
from voxindex.models.convert import state_dict_from_ct2, whisper_config_from_ct2
from voxindex.models.ct2 import read_checkpoint
from voxindex.models.precision import bfloat16_encoder, quantize
from voxindex.models.registry import Ct2Source, TransformersSource, resolve
from voxindex.models.tokenizer import WhisperTokenizer
from voxindex.models.whisper import WhisperModel

log = logging.getLogger("voxindex.models")


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ModelNotFoundError(f"unknown device {requested!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelNotFoundError("device 'cuda' requested but no CUDA GPU is available")
    return device


COMPUTE_TYPES = ("auto", "float32", "float16", "int8", "bfloat16")


def load_checkpoint(
    name: str, device: str = "auto", cache_dir: Path | None = None, compute_type: str = "auto"
) -> WhisperModel:
    """Resolve, load and place a model.

    ``compute_type`` "auto" is float16 on CUDA and float32 on a CPU here; ``voxindex.loading``
    then judges, on a CPU, whether int8 (dynamic quantization of every linear layer, as
    CTranslate2 does) or a bfloat16 encoder hears the bundled recordings as well (it needs the
    transcriber, which models/ does not import). Attention stays in float. (The engine decodes
    with its own runner; the transformers decoder stays eager for the reference path, whose word
    alignment reads its cross-attention weights.)
    """
    if compute_type not in COMPUTE_TYPES:
        raise ModelNotFoundError(
            f"compute type must be one of {', '.join(COMPUTE_TYPES)}, got {compute_type!r}"
        )
    target = pick_device(device)
    if compute_type == "auto":
        compute_type = "float16" if target.type == "cuda" else "float32"
    if compute_type in ("int8", "bfloat16") and target.type != "cpu":
        raise ModelNotFoundError(f"{compute_type} compute runs on the CPU only; use float16 on CUDA")
    dtype = torch.float16 if compute_type == "float16" else torch.float32
    source = resolve(name)
    if isinstance(source, Ct2Source):
        model, tokenizer, heads, suppress = _load_ct2(source, cache_dir)
    else:
        model, tokenizer, heads, suppress = _load_transformers(source)
    _use_sdpa_in_encoder(model)
    module: torch.nn.Module = model
    module.to(device=target, dtype=dtype)
    module.train(False)
    module.requires_grad_(False)
    loaded = WhisperModel(name, model, tokenizer, target, dtype, heads, suppress, compute_type)
    if compute_type == "bfloat16":
        return bfloat16_encoder(loaded)
    return quantize(loaded) if compute_type == "int8" else loaded


def _use_sdpa_in_encoder(model: WhisperForConditionalGeneration) -> None:
    """Fused attention in the encoder (2x faster on CPU); the decoder stays eager because word
    alignment reads its cross-attention weights."""
    config = copy.deepcopy(model.config)
    config._attn_implementation = "sdpa"
    for layer in model.model.encoder.layers:
        layer.self_attn.config = config


def _load_ct2(
    source: Ct2Source, cache_dir: Path | None
) -> tuple[WhisperForConditionalGeneration, WhisperTokenizer, list[tuple[int, int]], list[int]]:
    tokenizer = WhisperTokenizer.from_file(source.tokenizer_json)
    try:
        meta = json.loads(source.config_json.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{source.config_json}: unreadable ({e})") from e
    heads = [(int(layer), int(head)) for layer, head in meta.get("alignment_heads", [])]
    suppress = [int(i) for i in meta.get("suppress_ids", [])]
    cached = _cache_path(source, cache_dir)
    if cached is not None and (cached / "model.safetensors").is_file():
        config = WhisperConfig.from_json_file(str(cached / "config.json"))
        state = load_file(str(cached / "model.safetensors"))
        state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    else:
        ckpt = read_checkpoint(source.parts)
        special = {
            "<|endoftext|>": tokenizer.special.eot,
            "<|startoftranscript|>": tokenizer.special.sot,
        }
        config = whisper_config_from_ct2(ckpt, special)
        state = state_dict_from_ct2(ckpt, config)
        if cached is not None:
            _write_cache(cached, config, state)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.proj_out.weight = model.model.decoder.embed_tokens.weight
    return model, tokenizer, heads, suppress


def _load_transformers(
    source: TransformersSource,
) -> tuple[WhisperForConditionalGeneration, WhisperTokenizer, list[tuple[int, int]], list[int]]:
    try:
        model = WhisperForConditionalGeneration.from_pretrained(source.location, attn_implementation="eager")
        from huggingface_hub import hf_hub_download

        local = Path(source.location) / "tokenizer.json"
        tok_path = local if local.is_file() else Path(hf_hub_download(source.location, "tokenizer.json"))
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"model {source.name!r} could not be loaded: {e}") from e
    tokenizer = WhisperTokenizer.from_file(tok_path)
    gen = model.generation_config
    heads = [(int(a), int(b)) for a, b in (getattr(gen, "alignment_heads", None) or [])]
    suppress = [int(i) for i in (getattr(gen, "suppress_tokens", None) or [])]
    return model, tokenizer, heads, suppress


def _cache_path(source: Ct2Source, cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        return None
    h = hashlib.sha256()
    for part in source.parts:
        st = part.stat()
        h.update(f"{part.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir / "models" / f"{source.name.replace('/', '_')}-{h.hexdigest()[:16]}"


def _write_cache(path: Path, config: WhisperConfig, state: dict[str, torch.Tensor]) -> None:
    """Write atomically so a crash mid-write never leaves a half cache that later loads."""
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        config.to_json_file(str(tmp / "config.json"))
        save_file({k: v for k, v in state.items() if k != "proj_out.weight"}, str(tmp / "model.safetensors"))
        tmp.replace(path)
    except OSError as e:
        log.warning("could not cache converted model at %s: %s", path, e)

"""Map a CTranslate2 Whisper checkpoint onto the transformers Whisper state dict.

CTranslate2 fuses projections: self-attention ``linear_0`` is q|k|v stacked on the
output axis (Whisper's k projection has no bias, so its third of the bias is zero),
cross-attention ``linear_0`` is q and ``linear_1`` is k|v, and the output projection is
the last linear. ``proj_out`` is tied to the token embedding. int8 weights are
dequantized with their per-row ``weight_scale``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import WhisperConfig

from voxindex.errors import CheckpointFormatError
from voxindex.models.ct2 import Ct2Checkpoint

StateDict = dict[str, torch.Tensor]


def whisper_config_from_ct2(ckpt: Ct2Checkpoint, special: dict[str, int]) -> WhisperConfig:
    """Infer the architecture from tensor shapes; special token ids come from the tokenizer."""
    v = ckpt.variables
    if "encoder/conv1/weight" not in v or "decoder/embeddings/weight" not in v:
        raise CheckpointFormatError(f"not a Whisper checkpoint (spec {ckpt.spec!r})")
    vocab, d_model = v["decoder/embeddings/weight"].shape
    n_mels = v["encoder/conv1/weight"].shape[1]
    enc_layers = _count_layers(v, "encoder")
    dec_layers = _count_layers(v, "decoder")
    ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_attention_heads=ckpt.scalar("encoder/num_heads"),
        decoder_attention_heads=ckpt.scalar("decoder/num_heads"),
        encoder_ffn_dim=int(ffn),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=special["<|startoftranscript|>"],
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|endoftext|>"],
        pad_token_id=special["<|endoftext|>"],
        tie_word_embeddings=True,
    )


def _count_layers(v: dict[str, Any], side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/bias" in v:
        n += 1
    if n == 0:
        raise CheckpointFormatError(f"checkpoint has no {side} layers")
    return n


def state_dict_from_ct2(ckpt: Ct2Checkpoint, config: WhisperConfig) -> StateDict:
    """Return the ``WhisperForConditionalGeneration`` state dict (float32)."""
    src = ckpt.variables
    sd: StateDict = {}

    def get(name: str) -> npt.NDArray[np.float32]:
        if name not in src:
            raise CheckpointFormatError(f"checkpoint lacks variable {name!r}")
        array = src[name]
        scale_name = name + "_scale"
        if array.dtype == np.int8 and scale_name in src:
            scale = src[scale_name].astype(np.float32)
            return array.astype(np.float32) / scale.reshape(-1, *([1] * (array.ndim - 1)))
        return array.astype(np.float32)

    def put(dst: str, array: npt.NDArray[np.float32]) -> None:
        sd[dst] = torch.from_numpy(np.ascontiguousarray(array))

    def linear(dst: str, name: str, bias: bool = True) -> None:
        put(f"{dst}.weight", get(f"{name}/weight"))
        if bias:
            put(f"{dst}.bias", get(f"{name}/bias"))

    def norm(dst: str, name: str) -> None:
        put(f"{dst}.weight", get(f"{name}/gamma"))
        put(f"{dst}.bias", get(f"{name}/beta"))

    def fused_qkv(dst: str, name: str) -> None:
        w, b = np.split(get(f"{name}/weight"), 3), np.split(get(f"{name}/bias"), 3)
        put(f"{dst}.q_proj.weight", w[0])
        put(f"{dst}.q_proj.bias", b[0])
        put(f"{dst}.k_proj.weight", w[1])
        put(f"{dst}.v_proj.weight", w[2])
        put(f"{dst}.v_proj.bias", b[2])

    def self_attention(dst: str, name: str) -> None:
        norm(f"{dst}.self_attn_layer_norm", f"{name}/self_attention/layer_norm")
        fused_qkv(f"{dst}.self_attn", f"{name}/self_attention/linear_0")
        linear(f"{dst}.self_attn.out_proj", f"{name}/self_attention/linear_1")

    def ffn(dst: str, name: str) -> None:
        norm(f"{dst}.final_layer_norm", f"{name}/layer_norm")
        linear(f"{dst}.fc1", f"{name}/linear_0")
        linear(f"{dst}.fc2", f"{name}/linear_1")

    for i in (1, 2):
        linear(f"model.encoder.conv{i}", f"encoder/conv{i}")
    put("model.encoder.embed_positions.weight", get("encoder/position_encodings/encodings"))
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(config.encoder_layers):
        src_l, dst_l = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        self_attention(dst_l, src_l)
        ffn(dst_l, f"{src_l}/ffn")

    put("model.decoder.embed_tokens.weight", get("decoder/embeddings/weight"))
    put("model.decoder.embed_positions.weight", get("decoder/position_encodings/encodings"))
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(config.decoder_layers):
        src_l, dst_l = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        self_attention(dst_l, src_l)
        norm(f"{dst_l}.encoder_attn_layer_norm", f"{src_l}/attention/layer_norm")
        linear(f"{dst_l}.encoder_attn.q_proj", f"{src_l}/attention/linear_0")
        kv_w, kv_b = (
            np.split(get(f"{src_l}/attention/linear_1/weight"), 2),
            np.split(get(f"{src_l}/attention/linear_1/bias"), 2),
        )
        put(f"{dst_l}.encoder_attn.k_proj.weight", kv_w[0])
        put(f"{dst_l}.encoder_attn.v_proj.weight", kv_w[1])
        put(f"{dst_l}.encoder_attn.v_proj.bias", kv_b[1])
        linear(f"{dst_l}.encoder_attn.out_proj", f"{src_l}/attention/linear_2")
        ffn(dst_l, f"{src_l}/ffn")
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    return sd

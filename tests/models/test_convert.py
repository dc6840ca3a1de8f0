from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from voxindex.loading import load_model
from voxindex.models.convert import state_dict_from_ct2, whisper_config_from_ct2
from voxindex.models.ct2 import Ct2Checkpoint, read_checkpoint
from voxindex.models.registry import Ct2Source, resolve

SPECIAL = {"<|endoftext|>": 50256, "<|startoftranscript|>": 50257}


@pytest.fixture(scope="module")
def ckpt() -> Ct2Checkpoint:
    source = resolve("tiny.en")
    assert isinstance(source, Ct2Source)
    return read_checkpoint(source.parts)


def f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32))


def test_architecture_is_inferred_from_tensor_shapes(ckpt: Ct2Checkpoint) -> None:
    c = whisper_config_from_ct2(ckpt, SPECIAL)
    assert (c.encoder_layers, c.decoder_layers) == (4, 4)
    assert (c.d_model, c.encoder_attention_heads, c.decoder_attention_heads) == (384, 6, 6)
    assert (c.vocab_size, c.num_mel_bins, c.encoder_ffn_dim) == (51864, 80, 1536)
    assert (c.max_source_positions, c.max_target_positions) == (1500, 448)


def test_state_dict_fills_every_transformers_parameter(ckpt: Ct2Checkpoint) -> None:
    config = whisper_config_from_ct2(ckpt, SPECIAL)
    sd = state_dict_from_ct2(ckpt, config)
    with torch.device("meta"):
        expected = WhisperForConditionalGeneration(config).state_dict()
    assert set(sd) == set(expected)
    for name, tensor in expected.items():
        assert sd[name].shape == tensor.shape, name


def test_fused_self_attention_splits_into_q_k_v_and_k_has_no_bias(ckpt: Ct2Checkpoint) -> None:
    sd = state_dict_from_ct2(ckpt, whisper_config_from_ct2(ckpt, SPECIAL))
    fused_w = f32(ckpt.variables["encoder/layer_2/self_attention/linear_0/weight"])
    fused_b = f32(ckpt.variables["encoder/layer_2/self_attention/linear_0/bias"])
    p = "model.encoder.layers.2.self_attn"
    torch.testing.assert_close(sd[f"{p}.q_proj.weight"], fused_w[:384])
    torch.testing.assert_close(sd[f"{p}.k_proj.weight"], fused_w[384:768])
    torch.testing.assert_close(sd[f"{p}.v_proj.weight"], fused_w[768:])
    torch.testing.assert_close(sd[f"{p}.q_proj.bias"], fused_b[:384])
    torch.testing.assert_close(sd[f"{p}.v_proj.bias"], fused_b[768:])
    assert f"{p}.k_proj.bias" not in sd
    assert torch.count_nonzero(fused_b[384:768]) == 0  # CTranslate2 stores Whisper's missing k bias as zeros


def test_cross_attention_kv_splits(ckpt: Ct2Checkpoint) -> None:
    sd = state_dict_from_ct2(ckpt, whisper_config_from_ct2(ckpt, SPECIAL))
    kv = f32(ckpt.variables["decoder/layer_1/attention/linear_1/weight"])
    p = "model.decoder.layers.1.encoder_attn"
    torch.testing.assert_close(sd[f"{p}.k_proj.weight"], kv[:384])
    torch.testing.assert_close(sd[f"{p}.v_proj.weight"], kv[384:])
    torch.testing.assert_close(
        sd[f"{p}.q_proj.weight"], f32(ckpt.variables["decoder/layer_1/attention/linear_0/weight"])
    )
    torch.testing.assert_close(
        sd[f"{p}.out_proj.weight"], f32(ckpt.variables["decoder/layer_1/attention/linear_2/weight"])
    )


def test_int8_weights_are_dequantized_with_their_row_scales(ckpt: Ct2Checkpoint) -> None:
    name = "encoder/layer_0/ffn/linear_0/weight"
    original = ckpt.variables[name].astype(np.float32)
    scale = 127.0 / np.abs(original).max(axis=1)
    quantized = Ct2Checkpoint(ckpt.spec, ckpt.revision, dict(ckpt.variables))
    quantized.variables[name] = np.round(original * scale[:, None]).astype(np.int8)
    quantized.variables[name + "_scale"] = scale.astype(np.float32)
    sd = state_dict_from_ct2(quantized, whisper_config_from_ct2(ckpt, SPECIAL))
    got = sd["model.encoder.layers.0.fc1.weight"].numpy()
    assert np.abs(got - original).max() <= (1 / scale).max() / 2 + 1e-6


def test_loaded_model_ties_proj_out_to_the_token_embedding(cache_dir: Path) -> None:
    model = load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="float32")
    m = model.model
    assert m.proj_out.weight.data_ptr() == m.model.decoder.embed_tokens.weight.data_ptr()
    assert model.alignment_heads[0] == (1, 0) and len(model.alignment_heads) == 8


def test_int8_quantizes_every_linear_layer(cache_dir: Path) -> None:
    """(Which compute type ``auto`` picks depends on the processor: tests/models/test_precision.py.)"""
    model = load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="int8")
    assert model.compute_type == "int8"
    assert type(model.model.proj_out).__module__.startswith("torch.ao.nn.quantized")
    linear = [m for m in model.model.modules() if type(m) is torch.nn.Linear]
    assert not linear

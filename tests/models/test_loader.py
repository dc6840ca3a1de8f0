from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import load_fixture, wer
from voxindex.loading import load_model
from voxindex.transcribe import OfflineTranscriber


def test_converted_weights_are_cached_and_reload_identically(tmp_path: Path) -> None:
    first = load_model("tiny.en", device="cpu", cache_dir=tmp_path, compute_type="float32")
    assert len(list(tmp_path.glob("models/tiny.en-*/model.safetensors"))) == 1
    again = load_model("tiny.en", device="cpu", cache_dir=tmp_path, compute_type="float32")
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert again.model.proj_out.weight.data_ptr() == again.model.model.decoder.embed_tokens.weight.data_ptr()


def test_multilingual_base_loads_from_two_packages_and_transcribes(cache_dir: Path) -> None:
    base = load_model("base", device="cpu", cache_dir=cache_dir)
    assert base.multilingual
    assert base.model.config.d_model == 512 and base.model.config.encoder_layers == 6
    result = OfflineTranscriber(base).transcribe(load_fixture("goforward.wav"), language="auto")
    assert result.language == "en"
    assert wer("go forward ten meters", result.text) <= 0.25


def test_unknown_device_is_refused() -> None:
    from voxindex.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="device"):
        load_model("tiny.en", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelNotFoundError, match="no CUDA"):
            load_model("tiny.en", device="cuda")

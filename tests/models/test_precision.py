"""The CPU compute type is chosen by measurement: int8 or a bfloat16 encoder only where it hears
as well as float32."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from voxindex.loading import count_errors, load_model
from voxindex.models import precision
from voxindex.models.whisper import WhisperModel


@pytest.fixture(scope="module")
def float32(cache_dir: Path) -> WhisperModel:
    return load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="float32")


def test_word_errors_count_edits_after_normalising_digits_and_punctuation() -> None:
    ref = precision.words_of("ten of clubs")
    assert precision.words_of("10 of Clubs.") == ref
    assert precision.word_errors(ref, precision.words_of("10 of Clothes.")) == 1
    assert precision.word_errors(ref, precision.words_of("ten clubs")) == 1
    assert precision.word_errors(ref, precision.words_of("ten of the clubs")) == 1
    assert precision.word_errors(ref, []) == 3


def test_an_int8_model_that_hears_worse_is_refused_and_the_verdict_is_cached(
    float32: WhisperModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = precision.quantize(float32, keep_original=True)
    layer = damaged.model.model.decoder.layers[0]
    broken = copy.deepcopy(float32.model.model.decoder.layers[0].fc1)
    order = torch.randperm(broken.weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # an int8 kernel that mixes up its inputs, made to order
        broken.weight.copy_(broken.weight[:, order])
    layer.fc1 = broken
    verdict = precision.compare(damaged, float32, count_errors)
    assert verdict.compute_type == "float32" and verdict.int8_errors > verdict.float32_errors + 1

    monkeypatch.setattr(precision, "compare", lambda int8, f32, count: verdict)
    monkeypatch.setattr(precision, "amx_available", lambda: False)  # int8 against float32 only
    chosen = precision.choose_cpu_precision(float32, tmp_path, count_errors)
    assert chosen is float32 and chosen.compute_type == "float32"

    def must_not_run(int8: WhisperModel, f32: WhisperModel, count: object) -> precision.Verdict:
        raise AssertionError("the cached verdict should have been used")

    monkeypatch.setattr(precision, "compare", must_not_run)  # a second start reads the cache
    assert precision.choose_cpu_precision(float32, tmp_path, count_errors).compute_type == "float32"


def test_auto_on_cpu_is_one_of_the_measured_types(tiny: WhisperModel) -> None:
    assert tiny.compute_type in ("int8", "float32", "bfloat16")
    quantized = any("quantized" in type(m).__module__ for m in tiny.model.modules())
    assert quantized == (tiny.compute_type == "int8")
    encoder = next(tiny.model.model.encoder.parameters()).dtype
    assert (encoder == torch.bfloat16) == (tiny.compute_type == "bfloat16")
    if not precision.amx_available():
        assert tiny.compute_type != "bfloat16"  # only where AMX makes it fast


def test_with_amx_the_encoder_runs_in_bfloat16_where_it_hears_as_well(
    float32: WhisperModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "amx_available", lambda: True)  # bfloat16 runs on any CPU, slower
    chosen = precision.choose_cpu_precision(copy.deepcopy(float32), tmp_path, count_errors)
    verdict = precision._read(precision._cache_path(float32, tmp_path))
    assert verdict is not None and verdict.bfloat16_errors is not None
    passes = verdict.bfloat16_errors <= verdict.float32_errors + precision.TOLERANCE_WORDS
    assert (chosen.compute_type == "bfloat16") == passes
    if passes:
        assert next(chosen.model.model.encoder.parameters()).dtype == torch.bfloat16
        assert next(chosen.model.model.decoder.parameters()).dtype == torch.float32


def test_the_bfloat16_compute_type_transcribes_real_speech(cache_dir: Path) -> None:
    from tests.conftest import load_fixture, wer
    from voxindex.transcribe import OfflineTranscriber

    model = load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="bfloat16")
    assert model.compute_type == "bfloat16" and model.encoder_dtype == torch.bfloat16
    result = OfflineTranscriber(model).transcribe(load_fixture("cards-005.wav"))
    assert wer("eight of spades four of clubs seven of hearts", result.text) <= 0.15

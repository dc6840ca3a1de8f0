from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxindex.errors import CheckpointFormatError
from voxindex.models.ct2 import read_checkpoint
from voxindex.models.registry import Ct2Source, resolve


@pytest.fixture(scope="module")
def tiny_source() -> Ct2Source:
    source = resolve("tiny.en")
    assert isinstance(source, Ct2Source)
    return source


def test_reads_every_variable_of_the_packaged_tiny_en(tiny_source: Ct2Source) -> None:
    ckpt = read_checkpoint(tiny_source.parts)
    assert ckpt.spec == "WhisperSpec"
    v = ckpt.variables
    assert v["decoder/embeddings/weight"].shape == (51864, 384)
    assert v["decoder/embeddings/weight"].dtype == np.float16
    assert v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert v["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert ckpt.scalar("encoder/num_heads") == 6
    # the alias: the output projection is the token embedding
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]


def test_split_parts_concatenate_to_the_same_checkpoint(tiny_source: Ct2Source, tmp_path: Path) -> None:
    data = tiny_source.parts[0].read_bytes()
    cut = len(data) // 3
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    parts[0].write_bytes(data[:cut])
    parts[1].write_bytes(data[cut:])
    whole, split = read_checkpoint(tiny_source.parts), read_checkpoint(parts)
    assert whole.variables.keys() == split.variables.keys()
    for name, array in whole.variables.items():
        np.testing.assert_array_equal(array, split.variables[name])


def test_parts_in_the_wrong_order_are_rejected(tiny_source: Ct2Source, tmp_path: Path) -> None:
    data = tiny_source.parts[0].read_bytes()
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(data[: len(data) // 2])
    b.write_bytes(data[len(data) // 2 :])
    with pytest.raises(CheckpointFormatError):
        read_checkpoint([b, a])


def test_truncated_checkpoint_is_a_clear_error(tiny_source: Ct2Source, tmp_path: Path) -> None:
    cut = tmp_path / "model.bin"
    cut.write_bytes(tiny_source.parts[0].read_bytes()[:1_000_000])
    with pytest.raises(CheckpointFormatError, match="not a complete CTranslate2 checkpoint"):
        read_checkpoint([cut])


def test_missing_part_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match="missing"):
        read_checkpoint([tmp_path / "model.bin.part1"])

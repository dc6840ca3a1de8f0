"""Short real human recordings (CMU PocketSphinx test data, BSD-style licence) for demos and benchmarks."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Sample:
    path: Path
    transcript: str


def samples() -> list[Sample]:
    with (HERE / "manifest.tsv").open() as f:
        return [Sample(HERE / row["file"], row["transcript"]) for row in csv.DictReader(f, delimiter="\t")]

"""The CPU compute type, chosen by measurement: int8 only where it hears as well as float32.

PyTorch's dynamic int8 kernels differ between processors (FBGEMM's AVX2 and AVX-512 paths,
oneDNN): on one Intel Xeon, tiny.en int8 heard "ten of clubs" as "10 of Clothes" where float32
on the same machine did not, while on AMD EPYC the two were level. So ``--compute-type auto``
on a CPU reads the bundled real recordings with both and keeps int8 (about twice as fast) only
when it makes no more than ``TOLERANCE_WORDS`` more word errors than float32; otherwise float32,
with the reason logged. The verdict is cached per model, processor and PyTorch build, so only a
machine's first start pays for the check (a few seconds on tiny.en).

On a processor with AMX matrix units (Intel Xeon since Sapphire Rapids) the encoder runs in
bfloat16 instead ("bfloat16": 2.6× faster than float32 and 1.6× faster than int8 there at
batch 1, 2.3× int8 per window at batch 4), while the decoder stays float32: its step reads
every row's cross-attention K/V and multiplies small matrices, where bfloat16 kernels are
slower, not faster. It is checked the same way against float32 and preferred when it passes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import platform
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from voxindex.samples import samples

if TYPE_CHECKING:
    from voxindex.models.whisper import WhisperModel

log = logging.getLogger("voxindex.models")

TOLERANCE_WORDS = 1
_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve".split()


@dataclass(frozen=True)
class Verdict:
    compute_type: str  # "bfloat16", "int8" or "float32"
    int8_errors: int
    float32_errors: int
    words: int
    bfloat16_errors: int | None = None  # None: no AMX on this processor, not tried

    @property
    def reason(self) -> str:
        bf16 = "" if self.bfloat16_errors is None else f", the bfloat16 encoder {self.bfloat16_errors}"
        return (
            f"int8 made {self.int8_errors} word errors{bf16} and float32 {self.float32_errors} "
            f"in {self.words} words of the bundled recordings"
        )


def quantize(model: WhisperModel, keep_original: bool = False) -> WhisperModel:
    """A float32 CPU model with every linear layer dynamically quantized to int8 (in place,
    unless ``keep_original``: then a copy)."""
    q = copy.deepcopy(model) if keep_original else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that eager quantization moves to torchao
        torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            q.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )
    q.compute_type = "int8"
    return q


def bfloat16_encoder(model: WhisperModel) -> WhisperModel:
    """A float32 CPU model with its encoder in bfloat16 (in place)."""
    model.model.model.encoder.to(torch.bfloat16)
    model.encoder_dtype = torch.bfloat16
    model.compute_type = "bfloat16"
    return model


def amx_available() -> bool:
    """Whether this processor has AMX bfloat16 matrix units (where a bfloat16 encoder is fast)."""
    return "amx_bf16" in _cpu_name().split()


def choose_cpu_precision(
    model: WhisperModel, cache_dir: Path | None, count_errors: Callable[[WhisperModel], int]
) -> WhisperModel:
    """``model`` (float32, CPU), its bfloat16-encoder or its int8 copy, whichever makes the fewest
    word errors (``count_errors``: reading the bundled recordings) says."""
    cached = _cache_path(model, cache_dir)
    verdict = _read(cached)
    int8: WhisperModel | None = None
    if verdict is None:
        int8 = quantize(model, keep_original=True)
        verdict = compare(int8, model, count_errors)
        if amx_available():
            errors = count_errors(bfloat16_encoder(copy.deepcopy(model)))
            keep = errors <= verdict.float32_errors + TOLERANCE_WORDS
            verdict = Verdict(
                "bfloat16" if keep else verdict.compute_type,
                verdict.int8_errors,
                verdict.float32_errors,
                verdict.words,
                errors,
            )
        _write(cached, verdict)
    if verdict.compute_type == "bfloat16":
        log.info("compute type bfloat16 (encoder; decoder float32): %s", verdict.reason)
        return bfloat16_encoder(model)
    if verdict.compute_type == "float32":
        log.warning("compute type float32: int8 is less accurate on this processor (%s)", verdict.reason)
        return model
    log.info("compute type int8: %s", verdict.reason)
    return int8 or quantize(model)


def compare(
    int8: WhisperModel, float32: WhisperModel, count_errors: Callable[[WhisperModel], int]
) -> Verdict:
    """Read the bundled recordings with both models and count word errors."""
    errors = [count_errors(int8), count_errors(float32)]
    keep = errors[0] <= errors[1] + TOLERANCE_WORDS
    words = sum(len(words_of(s.transcript)) for s in samples())
    return Verdict("int8" if keep else "float32", errors[0], errors[1], words)


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance in words (substitutions, insertions, deletions)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]


def words_of(text: str) -> list[str]:
    """Lower case, no punctuation, digits as words: "10 of Clubs." → ["ten", "of", "clubs"]."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return [_NUMBERS[int(w)] if w.isdigit() and int(w) < len(_NUMBERS) else w for w in words]


def _cache_path(model: WhisperModel, cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        return None
    engine = torch.backends.quantized.engine
    machine = f"{platform.machine()} {_cpu_name()} torch {torch.__version__} {engine}"
    key = hashlib.sha256(f"{model.name}|{machine}|v2".encode()).hexdigest()[:16]  # v2: bfloat16 tried
    return cache_dir / f"precision-{key}.json"


def _cpu_name() -> str:
    """The processor's model name and feature flags: what picks the int8 kernels."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [re.search(rf"^{key}\s*:\s*(.*)$", info, re.MULTILINE) for key in ("model name", "flags")]
    return " ".join(m.group(1) for m in lines if m)


def _read(path: Path | None) -> Verdict | None:
    if path is None or not path.exists():
        return None
    try:
        return Verdict(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write(path: Path | None, verdict: Verdict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(verdict.__dict__))
    except OSError as e:  # a read-only cache only means the check runs again next start
        log.warning("could not cache the compute-type check: %s", e)

"""Loading the model a server runs, with its CPU precision judged by what it hears.

``models.loader`` resolves and places a checkpoint. With compute type "auto" on a CPU, this
module then keeps float32, int8 or a bfloat16 encoder by reading the bundled recordings with
each (``models.precision``): that needs the whole transcriber, which models/ must not import.
"""

from __future__ import annotations

from pathlib import Path

from voxindex.audio import decode_file
from voxindex.models.loader import load_checkpoint
from voxindex.models.precision import choose_cpu_precision, word_errors, words_of
from voxindex.models.whisper import WhisperModel
from voxindex.samples import samples
from voxindex.transcribe import OfflineTranscriber


def load_model(
    name: str, device: str = "auto", cache_dir: Path | None = None, compute_type: str = "auto"
) -> WhisperModel:
    """Resolve, load and place a model. ``compute_type`` "auto" is float16 on CUDA; on a CPU,
    int8 where it hears the bundled recordings as well as float32 on this processor, else
    float32; where the processor has AMX, a bfloat16 encoder beside a float32 decoder if it
    hears as well (``precision.choose_cpu_precision``; BENCHMARKS.md has the speeds)."""
    model = load_checkpoint(name, device, cache_dir, compute_type)
    if compute_type == "auto" and model.device.type == "cpu":
        return choose_cpu_precision(model, cache_dir, count_errors)
    return model


def count_errors(model: WhisperModel) -> int:
    """Word errors reading the bundled recordings offline."""
    transcriber = OfflineTranscriber(model)
    return sum(
        word_errors(words_of(s.transcript), words_of(transcriber.transcribe(decode_file(s.path)).text))
        for s in samples()
    )

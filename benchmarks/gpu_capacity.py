"""How many real-time streams one GPU serves: the engine in-process, fed like live clients.

    python benchmarks/gpu_capacity.py [--bundle DIR] [--models tiny.en,small,large-v3-turbo,base]
        [--seconds 15] [--budget-s 330] [--out gpu_capacity.json] [--smoke]

Run on a GPU machine through ``benchmarks/gpu_capacity.sh`` (which brings what a bare machine
lacks: ``benchmarks/gpu_bundle.py`` prepares it here). ``--smoke`` runs every part at toy
sizes on the CPU (tests/benchmarks/test_gpu_capacity.py), so the script is known to run end to
end before a GPU is ever lent.

For each model and each number of streams N (swept from a middle level up until a level fails,
or down until one passes): N streams open on one Scheduler (the server's own, no sockets), each
plays the bundled real recordings in its own order with pauses of 0.4–1.2 s between them, in
100 ms frames at real-time pace, starting at staggered times. Measured per utterance as
``voxindex bench`` measures it: speech onset → first interim or final covering it, end of
speech → its final; per level: encoder windows/s, decode tokens/s, mean decode batch, GPU
memory (peak allocated, and in use on the card), GPU utilisation (NVML, sampled). A level
passes when every utterance got its final, p95 end → final ≤ 1.0 s and p95 onset → first
≤ 0.5 s. The same for tiny.en with batching off (one reading per pass) gives the ratio.

Models: tiny.en with its real weights (fp16, from the bundle, else the installed package).
base, small and large-v3-turbo with random weights of their real shapes, since their weights
cannot travel; their readings are decoded with a length model taken from the real
transcripts: each reading emits real transcript tokens (so the policy sees real words) at the
rate the bundled transcripts have per second of speech, times the reading's audio, then end of
text; the forced token gets all the probability, so readings are not judged hallucinations.
Every other cost is real: encoder, cross-attention K/V, every decoder layer, the logit rules,
alignment heads and word timings, VAD, scheduling.

Also: decode step time per batch bucket, eager and replayed as a CUDA graph, and encoder
windows/s for 15-second windows.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import platform
import sys
import threading
import time
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from voxindex.cli.bench import Utterance, percentile, score, speech_span  # noqa: E402
from voxindex.config import Settings  # noqa: E402
from voxindex.device import DeviceProbe, cpu_name  # noqa: E402
from voxindex.engine.encoder import encode  # noqa: E402
from voxindex.engine.events import Closed, Error, Final, Interim  # noqa: E402
from voxindex.engine.executor import window_frames  # noqa: E402
from voxindex.engine.mel import LogMel  # noqa: E402
from voxindex.engine.runner import BUCKETS, NEG, Runner  # noqa: E402
from voxindex.engine.runner.batch import PersistentBatch  # noqa: E402
from voxindex.engine.runner.sampler import Sampler  # noqa: E402
from voxindex.engine.scheduler import Scheduler  # noqa: E402
from voxindex.engine.types import StreamOptions  # noqa: E402
from voxindex.loading import load_model  # noqa: E402
from voxindex.models.loader import _use_sdpa_in_encoder  # noqa: E402
from voxindex.models.tokenizer import WhisperTokenizer  # noqa: E402
from voxindex.models.whisper import WhisperModel  # noqa: E402

FRAME_S = 0.1
P95_FINAL_S = 1.0
P95_FIRST_S = 0.5
CORPORA = [ROOT / "tests" / "fixtures", ROOT / "tests" / "fixtures" / "librivox"]

# the real shapes (OpenAI's checkpoints); large-v3-turbo's vocabulary is one token larger
# (51866) than the tokenizer the bundle carries: its output projection here has 51865 rows
SHAPES: dict[str, dict[str, int]] = {
    "base": dict(d_model=512, layers=6, decoder_layers=6, heads=8, ffn=2048, mels=80),
    "small": dict(d_model=768, layers=12, decoder_layers=12, heads=12, ffn=3072, mels=80),
    "large-v3-turbo": dict(d_model=1280, layers=32, decoder_layers=4, heads=20, ffn=5120, mels=128),
}
# alignment heads (layer, head): OpenAI's for base and small; for turbo six heads of its last
# two decoder layers (the real list is of that size and place)
HEADS = {
    "base": [(3, 1), (4, 2), (4, 3), (4, 7), (5, 1), (5, 2), (5, 4), (5, 6)],
    "small": [(5, 3), (5, 9), (8, 0), (8, 4), (8, 7), (8, 8), (9, 0), (9, 7), (9, 9), (10, 5)],
    "large-v3-turbo": [(2, 4), (2, 11), (3, 3), (3, 6), (3, 11), (3, 14)],
}
LEVELS = {
    "tiny.en": [256, 512, 1024, 1536, 2048, 3072],
    "base": [128, 256, 512, 1024, 1536],
    "small": [64, 128, 256, 384, 512, 768],
    "large-v3-turbo": [16, 32, 64, 96, 128, 192],
}
START = {"tiny.en": 2, "base": 2, "small": 2, "large-v3-turbo": 2}  # index of the first level run
UNBATCHED = [2, 4, 8, 16, 32, 64]


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray
    transcript: str


def read_wav(path: Path) -> np.ndarray:
    """16 kHz mono 16-bit PCM (the bundled recordings), without FFmpeg."""
    with wave.open(str(path)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def load_clips() -> list[Clip]:
    clips = []
    for folder in CORPORA:
        with (folder / "manifest.tsv").open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                clips.append(Clip(read_wav(folder / row["file"]), row["transcript"]))
    return clips


def plan(
    clips: list[Clip], seconds: float, rng: np.random.Generator
) -> tuple[float, np.ndarray, list[Utterance]]:
    """One stream: (start offset, audio, utterances), its clips in its own order."""
    parts, utterances, t = [np.zeros(int(0.5 * 16000), np.float32)], [], 0.5
    order = rng.permutation(len(clips))
    k = 0
    while t < seconds:
        clip = clips[order[k % len(order)]].audio
        begin, end = speech_span(clip)
        utterances.append(Utterance(t + begin, t + end))
        gap = np.zeros(int(rng.uniform(0.4, 1.2) * 16000), np.float32)
        parts += [clip, gap]
        t += (clip.size + gap.size) / 16000
        k += 1
    return float(rng.uniform(0, 2.0)), np.concatenate(parts), utterances


# ---------------- models ----------------
class ScriptedSampler(Sampler):
    """The sampler, choosing the tokens of a real transcript, as many as the length model gives
    (random weights would say anything for any length). Everything the step computes is
    computed; the logits are replaced just before the rules choose."""

    def __init__(self, model: WhisperModel, batch: PersistentBatch) -> None:
        super().__init__(model, batch)
        self.script = batch.declare((batch.capacity, batch.budget_len), torch.long)  # tokens to say
        self.length = batch.declare((batch.capacity,), torch.long)  # tokens before end of text

    def __call__(
        self, logits: torch.Tensor, attention: torch.Tensor, width: int, frames: int, full: bool
    ) -> torch.Tensor:
        count = self.batch.count[:width]
        said = self.script[:width].gather(1, count.clamp(max=self.script.shape[1] - 1)[:, None])[:, 0]
        target = torch.where(count < self.length[:width], said, self.eot)
        forced = torch.full_like(logits, NEG).scatter_(1, target[:, None], 0.0)
        return super().__call__(forced, attention, width, frames, full)


class ScriptedRunner(Runner):
    """A runner whose readings say real transcript tokens (``ScriptedSampler``)."""

    def setup(self, corpus: list[int], tokens_per_second: float) -> None:
        self.sampler = scripted = ScriptedSampler(self.model, self.batch)
        banned = set(self.model.suppress_tokens)
        said = [t for t in corpus if t < scripted.eot and t not in banned]  # tokens the rules allow
        said = said * (1 + 2 * self.batch.budget_len // max(1, len(said)))
        self.corpus = torch.tensor(said, device=self.model.device)
        self.rate = tokens_per_second
        self.rng = np.random.default_rng(0)

    def admit(self, encoded: torch.Tensor, options: list[Any]) -> list[int]:
        first = len(self.rows)
        keys = super().admit(encoded, options)
        scripted = self.sampler
        assert isinstance(scripted, ScriptedSampler)
        budget = scripted.script.shape[1] - 1
        for j, opt in enumerate(options):
            n = min(budget, max(1, round(self.rate * opt.num_frames / 100)))
            start = int(self.rng.integers(0, len(self.corpus) - n))
            scripted.script[first + j, :n] = self.corpus[start : start + n]
            scripted.length[first + j] = n
        return keys


def random_model(name: str, bundle: Path | None, device: torch.device) -> WhisperModel:
    """``name``'s real shapes with random weights, on ``device`` in float16 (float32 on a CPU)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    shape = SHAPES[name]
    tokenizer, suppress = multilingual_tokenizer(bundle)
    config = WhisperConfig(
        vocab_size=51865,
        num_mel_bins=shape["mels"],
        d_model=shape["d_model"],
        encoder_layers=shape["layers"],
        decoder_layers=shape["decoder_layers"],
        encoder_attention_heads=shape["heads"],
        decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"],
        decoder_ffn_dim=shape["ffn"],
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=tokenizer.special.sot,
        eos_token_id=tokenizer.special.eot,
        pad_token_id=tokenizer.special.eot,
    )
    config._attn_implementation = "eager"
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).to(dtype)
    _use_sdpa_in_encoder(model)
    model.train(False)
    model.requires_grad_(False)
    return WhisperModel(
        name,
        model,
        tokenizer,
        device,
        dtype,
        HEADS[name],
        suppress,
        "float16" if dtype == torch.float16 else "float32",
    )


def multilingual_tokenizer(bundle: Path | None) -> tuple[WhisperTokenizer, list[int]]:
    """The multilingual tokenizer and suppress list: from the bundle, or the base package."""
    if bundle is not None and (bundle / "multilingual" / "tokenizer.json").is_file():
        folder = bundle / "multilingual"
        return WhisperTokenizer.from_file(folder / "tokenizer.json"), json.loads(
            (folder / "suppress.json").read_text()
        )
    from voxindex.models.registry import resolve

    source = resolve("base")
    meta = json.loads(source.config_json.read_text())  # type: ignore[union-attr]
    return WhisperTokenizer.from_file(source.tokenizer_json), [int(i) for i in meta["suppress_ids"]]  # type: ignore[union-attr]


def tiny_model(bundle: Path | None, device: torch.device) -> tuple[WhisperModel, str]:
    """tiny.en with its real weights, and where they came from."""
    compute = "float16" if device.type == "cuda" else "float32"
    folder = bundle / "tiny.en" if bundle is not None else None
    if folder is not None and (folder / "config.json").is_file():
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        missing = sorted({f for f in index["weight_map"].values() if not (folder / f).is_file()})
        if not missing:
            return load_model(
                str(folder), str(device), compute_type=compute
            ), f"real weights (fp16, {folder})"
        print(f"tiny.en: bundle lacks {', '.join(missing)}", flush=True)
    try:
        return load_model("tiny.en", str(device), compute_type=compute), "real weights (installed package)"
    except Exception as e:  # neither: random weights of its shapes, said plainly
        print(f"tiny.en: real weights unavailable ({e}); random weights of its shapes", flush=True)
        SHAPES["tiny.en"] = dict(d_model=384, layers=4, decoder_layers=4, heads=6, ffn=1536, mels=80)
        HEADS["tiny.en"] = [(1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]
        return random_model("tiny.en", bundle, device), "RANDOM weights (real ones unavailable)"


def length_model(model: WhisperModel, clips: list[Clip]) -> tuple[list[int], float]:
    """The transcripts' tokens (with a leading space, as Whisper says them) and tokens per
    second of speech."""
    tokens: list[int] = []
    speech = 0.0
    for clip in clips:
        tokens += model.tokenizer.encode(" " + clip.transcript.strip())
        begin, end = speech_span(clip.audio)
        speech += end - begin
    return tokens, len(tokens) / speech


# ---------------- the live sweep ----------------
class UtilisationSampler:
    """NVML's utilisation every 0.25 s while a level runs."""

    def __init__(self, probe: DeviceProbe | None) -> None:
        self.probe, self.samples, self._stop = probe, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            u = self.probe.utilization() if self.probe is not None else None
            if u is not None:
                self.samples.append(u)

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 3) if self.samples else None


async def feed_and_listen(
    scheduler: Scheduler, offset: float, audio: np.ndarray, utterances: list[Utterance], opts: StreamOptions
) -> tuple[Any, str | None]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(offset)
    try:
        stream = scheduler.open(opts, loop)
    except Exception as e:
        return None, f"refused: {e}"
    messages: list[tuple[float, dict[str, Any]]] = []
    t0 = time.monotonic()
    step = int(FRAME_S * 16000)

    async def send() -> None:
        for i in range(0, audio.size, step):
            await stream.room.wait()
            stream.push_audio(audio[i : i + step])
            scheduler.wake()
            await asyncio.sleep(max(0.0, t0 + (i + step) / 16000 - time.monotonic()))
        stream.request_close()
        scheduler.wake()

    sender = asyncio.create_task(send())
    error = None
    while True:
        event = await stream.events.get()
        now = time.monotonic() - t0
        if isinstance(event, (Interim, Final)):
            words = [{"start": w.start, "end": w.end, "word": w.word} for w in getattr(event, "words", [])]
            kind = "final" if isinstance(event, Final) else "interim"
            messages.append((now, {"type": kind, "start": event.start, "end": event.end, "words": words}))
        elif isinstance(event, Error):
            error = f"{event.code}: {event.message}"
            break
        elif isinstance(event, Closed):
            break
    sender.cancel()
    return score(messages, utterances), error


def run_level(
    scheduler: Scheduler,
    n: int,
    seconds: float,
    clips: list[Clip],
    probe: DeviceProbe | None,
    language: str | None,
) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    plans = [plan(clips, seconds, rng) for _ in range(n)]
    opts = StreamOptions(language=language)
    before = replace(scheduler.stats)
    cuda = scheduler.model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(scheduler.model.device)

    async def main() -> list[tuple[Any, str | None]]:
        return await asyncio.gather(*(feed_and_listen(scheduler, o, a, u, opts) for o, a, u in plans))

    started = time.monotonic()
    with UtilisationSampler(probe) as util:
        results = asyncio.run(main())
    elapsed = time.monotonic() - started
    after = scheduler.stats
    scored = [r for r, _ in results if r is not None]
    errors = sorted({e for _, e in results if e is not None})
    first = [x for r in scored for x in r.first_transcript]
    final = [x for r in scored for x in r.final]
    missing = sum(r.missing_finals for r in scored) + sum(
        len(u) for (_, _, u), (r, _) in zip(plans, results, strict=True) if r is None
    )
    steps = after.batches - before.batches
    rows = after.decode_rows - before.decode_rows
    row: dict[str, Any] = {
        "streams": n,
        "utterances": sum(len(u) for _, _, u in plans),
        "missing_finals": missing,
        "errors": errors,
        "first_s": {q: round(percentile(first, q), 3) for q in (50, 95, 99)},
        "final_s": {q: round(percentile(final, q), 3) for q in (50, 95, 99)},
        "encoder_windows_per_s": round((after.batch_items - before.batch_items) / elapsed, 1),
        "decode_tokens_per_s": round(rows / elapsed, 1),
        "decode_steps_per_s": round(steps / elapsed, 1),
        "mean_decode_batch": round(rows / steps, 1) if steps else 0.0,
        "gpu_utilisation": util.mean,
    }
    if cuda:
        row["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(scheduler.model.device) / 2**30, 2)
        row["card_used_gib"] = round(probe.memory()[0] / 2**30, 2) if probe is not None else None
    row["passes"] = bool(
        missing == 0
        and not errors
        and percentile(final, 95) <= P95_FINAL_S
        and percentile(first, 95) <= P95_FIRST_S
    )
    return row


def sweep(
    scheduler: Scheduler,
    levels: list[int],
    start: int,
    seconds: float,
    clips: list[Clip],
    probe: DeviceProbe | None,
    language: str | None,
    deadline: float,
    label: str,
) -> list[dict[str, Any]]:
    """Up from ``levels[start]`` while levels pass, or down while they fail: the boundary."""
    rows: list[dict[str, Any]] = []
    i = min(start, len(levels) - 1)
    direction = 0
    while 0 <= i < len(levels) and time.monotonic() + seconds + 5 < deadline:
        row = run_level(scheduler, levels[i], seconds, clips, probe, language)
        rows.append(row)
        print(f"{label:28s} " + line(row), flush=True)
        direction = direction or (1 if row["passes"] else -1)
        if (direction > 0) != row["passes"]:
            break
        i += direction
    return rows


def line(r: dict[str, Any]) -> str:
    f, g = r["first_s"], r["final_s"]
    return (
        f"N={r['streams']:5d}  onset→first {f[50]:.2f}/{f[95]:.2f}/{f[99]:.2f}"
        f"  end→final {g[50]:.2f}/{g[95]:.2f}/{g[99]:.2f}"
        f"  missing {r['missing_finals']}  enc {r['encoder_windows_per_s']}/s"
        f"  tok {r['decode_tokens_per_s']}/s"
        f"  batch {r['mean_decode_batch']}  util {r['gpu_utilisation']}  {'PASS' if r['passes'] else 'fail'}"
    )


def scheduler_for(
    model: WhisperModel,
    slots: int,
    batching: bool,
    streams: int,
    clips: list[Clip],
    script: tuple[list[int], float] | None,
) -> Scheduler:
    """The server's scheduler for ``model`` (``script``: random weights read by the length model)."""
    settings = Settings(
        model=model.name,
        max_batch=slots,
        batching=batching,
        max_streams=streams + 1,
        max_streams_per_tenant=0,  # every simulated client is one tenant
        index=False,
        warmup=False,
    )
    scheduler = Scheduler(model, settings)
    if script is not None:
        runner = scheduler.executor.runner
        scheduler.executor.runner = scripted = ScriptedRunner(model, slots=slots, static_shapes=runner.static)
        del runner
        scripted.setup(*script)
    scheduler.warm_up(clips[0].audio, batch=min(4, slots))  # captures the decode graphs on CUDA
    scheduler.start()
    return scheduler


# ---------------- kernels: decode step per bucket, encoder windows/s ----------------
def time_cuda(fn: Any, repeats: int) -> float:
    """Seconds per call (CUDA events on a GPU, the wall clock on a CPU)."""
    fn()
    if not torch.cuda.is_available():
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t) / repeats
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / repeats


def kernel_tables(model: WhisperModel, clips: list[Clip], buckets: list[int], repeats: int) -> dict[str, Any]:
    mel = LogMel(model.n_mels, model.device)
    audio = [torch.from_numpy(c.audio) for c in clips]
    out: dict[str, Any] = {"decode_step_ms": [], "encoder": []}
    runner = Runner(model, slots=max(buckets), static_shapes=True)
    for width in buckets:
        rows = [audio[i % len(audio)] for i in range(width)]
        frames = max(window_frames(a.numel()) for a in rows)
        encoded = torch.cat(
            [encode(model, mel(rows[i : i + 64], frames), frames) for i in range(0, width, 64)]
        )
        from voxindex.engine.types import DecodeOptions

        for key in [r.key for r in runner.rows]:
            runner.release(key)
        runner.admit(encoded, [DecodeOptions(max_tokens=224, num_frames=frames) for _ in rows])
        eager = time_cuda(lambda w=width: runner._decode(w), repeats)
        out["decode_step_ms"].append({"batch": width, "eager_ms": round(eager * 1000, 3)})
    if model.device.type == "cuda":
        runner.capture()
        for entry in out["decode_step_ms"]:
            graph = runner._graphs[entry["batch"]]
            entry["graph_ms"] = round(time_cuda(graph.replay, repeats) * 1000, 3)
    for batch in [64, 256] if model.device.type == "cuda" else [2]:
        rows = [audio[i % len(audio)] for i in range(batch)]
        mels = mel(rows, 1500)
        seconds = time_cuda(lambda m=mels: encode(model, m, 1500), max(1, repeats // 4))
        with_mel = time_cuda(lambda r=rows: encode(model, mel(r, 1500), 1500), max(1, repeats // 4))
        out["encoder"].append(
            {
                "batch": batch,
                "windows_15s_per_s": round(batch / seconds, 1),
                "with_log_mel_per_s": round(batch / with_mel, 1),
            }
        )
    if model.device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# ---------------- main ----------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="what benchmarks/gpu_bundle.py prepared")
    p.add_argument("--models", default="tiny.en,small,large-v3-turbo,base")
    p.add_argument("--seconds", type=float, default=15.0, help="audio per stream at each level")
    p.add_argument("--budget-s", type=float, default=330.0, help="stop starting levels after this")
    p.add_argument("--out", type=Path, default=Path("gpu_capacity.json"))
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: proves the script runs")
    args = p.parse_args()
    deadline = time.monotonic() + args.budget_s
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    probe = DeviceProbe(device) if device.type == "cuda" else None
    clips = load_clips()
    report: dict[str, Any] = {
        "device": probe.facts() if probe is not None else {"type": "cpu", "name": cpu_name()},
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "seconds_per_level": args.seconds,
        "models": {},
    }
    print(f"device: {report['device']}  torch {torch.__version__}  CUDA {torch.version.cuda}", flush=True)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if time.monotonic() > deadline:
            report["models"][name] = {"skipped": "time budget spent"}
            continue
        t = time.monotonic()
        if name == "tiny.en":
            model, weights = tiny_model(args.bundle, device)
        else:
            model, weights = (
                random_model(name, args.bundle, device),
                "random weights of the real shapes, scripted lengths",
            )
        corpus, rate = length_model(model, clips)
        entry: dict[str, Any] = {"weights": weights, "load_s": round(time.monotonic() - t, 1)}
        if "random" in weights.lower():
            entry["tokens_per_speech_second"] = round(rate, 2)
        levels = [2] if args.smoke else LEVELS[name]
        slots = 2 if args.smoke else min(1024, max(levels))
        buckets = (
            [1, 2]
            if args.smoke
            else [b for b in BUCKETS if b <= slots and b in (1, 8, 32, 64, 128, 256, 512, 1024)]
        )
        entry["kernels"] = kernel_tables(model, clips, buckets, 3 if args.smoke else 50)
        print(f"{name}: {weights}; kernels {json.dumps(entry['kernels'])}", flush=True)
        language = "en" if model.multilingual else None
        modes = [("batched", True, levels, START.get(name, 0) if not args.smoke else 0)]
        if name == "tiny.en":
            modes.append(("unbatched", False, [1] if args.smoke else UNBATCHED, 0 if args.smoke else 2))
        script = (corpus, rate) if "random" in weights.lower() else None
        for mode, batching, lv, start in modes:
            scheduler = scheduler_for(model, slots if batching else 1, batching, max(lv), clips, script)
            try:
                entry[mode] = sweep(
                    scheduler, lv, start, args.seconds, clips, probe, language, deadline, f"{name} {mode}"
                )
            finally:
                scheduler.stop()
        passing = lambda rows: max((r["streams"] for r in rows if r["passes"]), default=0)  # noqa: E731
        entry["max_real_time_streams"] = passing(entry.get("batched", []))
        if "unbatched" in entry:
            unbatched = passing(entry["unbatched"])
            entry["max_real_time_streams_unbatched"] = unbatched
            entry["batching_ratio"] = (
                round(entry["max_real_time_streams"] / unbatched, 1) if unbatched else None
            )
        report["models"][name] = entry
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    args.out.write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    device = report["device"].get("name")
    print(f"\n== GPU capacity on {device} (torch {report['torch']}, CUDA {report['cuda']}) ==")
    header = f"{'model':16s} {'weights':8s} {'max streams':>11s} {'unbatched':>9s} {'ratio':>6s}"
    print(f"{header}  decode step ms (batch: eager/graph)")
    for name, e in report["models"].items():
        if "skipped" in e:
            print(f"{name:16s} skipped: {e['skipped']}")
            continue
        steps = "  ".join(
            f"{d['batch']}: {d['eager_ms']}/{d.get('graph_ms', '-')}" for d in e["kernels"]["decode_step_ms"]
        )
        kind = "random" if "random" in e["weights"].lower() else "real"
        unbatched = e.get("max_real_time_streams_unbatched", "-")
        print(
            f"{name:16s} {kind:8s} {e['max_real_time_streams']:>11d} {unbatched!s:>9s}"
            f" {e.get('batching_ratio', '-')!s:>6s}  {steps}"
        )
        for enc in e["kernels"]["encoder"]:
            rate, with_mel = enc["windows_15s_per_s"], enc["with_log_mel_per_s"]
            print(f"{'':16s} encoder batch {enc['batch']}: {rate} 15-s windows/s ({with_mel} with log-mel)")
        for mode in ("batched", "unbatched"):
            for r in e.get(mode, []):
                print(f"{'':16s} {mode[:9]:9s} " + line(r))


if __name__ == "__main__":
    raise SystemExit(main())

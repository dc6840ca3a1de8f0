"""Accuracy: offline transcription against the live streaming path, on real human speech.

    .venv/bin/python benchmarks/accuracy.py                          # tiny.en int8 + float32, base
    .venv/bin/python benchmarks/accuracy.py --models tiny.en:int8 --streams 1 4 --json out.json

Every real recording the project has (``tests/fixtures``: the PocketSphinx cards and command,
and five LibriVox sentences; sources and licences in ``tests/fixtures/README.md``). Each of N
streams plays every recording once, in its own order, 1 s apart. That audio goes through (a)
``voxindex transcribe``'s offline path, as one file per stream, and (b) a real server on
loopback, N concurrent WebSocket streams at real-time pace in 100 ms frames. The offline WER of
each recording alone is printed too. Corpus WER uses Whisper's English normaliser. The
streaming rows also give end of speech → final latency (client clock), so an accuracy change
that costs latency shows in the same table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import Recording, corpus_wer, recordings

from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file
from voxindex.cli.bench import Utterance, _start_server, drive, percentile, speech_span
from voxindex.config import Settings
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel
from voxindex.transcribe import OfflineTranscriber

GAP_S = 1.0


def stream_plan(recs: list[Recording], index: int) -> tuple[Float32Array, list[Utterance], list[str]]:
    """Stream ``index``'s audio: every recording once, rotated by ``index``, ``GAP_S`` apart."""
    order = recs[index % len(recs) :] + recs[: index % len(recs)]
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    parts, utterances, t = [gap], [], GAP_S
    for rec in order:
        clip = decode_file(rec.path)
        begin, end = speech_span(clip)
        utterances.append(Utterance(t + begin, t + end))
        parts += [clip, gap]
        t += clip.size / SAMPLE_RATE + GAP_S
    return np.concatenate(parts), utterances, [r.transcript for r in order]


def by_utterance(
    utterances: list[Utterance], references: list[str], pieces: list[tuple[float, float, str]]
) -> list[tuple[str, str]]:
    """(reference, hypothesis) per utterance: each word of the finals (or of the offline
    transcript) goes to the utterance it overlaps most, or the nearest. Scored utterance by
    utterance because Whisper's normaliser joins number words across a boundary ("five five" +
    "eight of spades" → "558 of spades"), which would score digits against words, not streaming
    against offline."""
    heard: list[list[str]] = [[] for _ in utterances]
    for start, end, text in pieces:
        heard[max(range(len(utterances)), key=lambda i: _fit(utterances[i], start, end))].append(text)
    return [(ref, " ".join(h)) for ref, h in zip(references, heard, strict=True)]


def _fit(u: Utterance, start: float, end: float) -> float:
    """How well a span fits an utterance: its overlap, or minus its distance when none."""
    overlap = min(end, u.end) - max(start, u.start)
    return overlap if overlap > 0 else -min(abs(start - u.end), abs(end - u.start))


def offline(model: WhisperModel, recs: list[Recording], streams: list[int]) -> dict[str, Any]:
    """``voxindex transcribe``'s path: each recording alone, and each stream's whole audio as
    one file (the same audio the streams play, so the streaming rows compare like with like)."""
    transcriber = OfflineTranscriber(model)
    files = [(r.transcript, transcriber.transcribe(decode_file(r.path)).text) for r in recs]
    out: dict[str, Any] = {"files": {"wer": corpus_wer(files), "pairs": files}}
    for n in streams:
        plans = [stream_plan(recs, i * len(recs) // n) for i in range(n)]
        pairs = []
        for audio, utts, refs in plans:
            segments = transcriber.transcribe(audio, words=True).segments
            pairs += by_utterance(utts, refs, [(w.start, w.end, w.word) for g in segments for w in g.words])
        out[f"streams_{n}"] = {"wer": corpus_wer(pairs), "pairs": pairs}
    return out


def streaming(model: WhisperModel, recs: list[Recording], streams: int, batching: bool) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="voxindex-accuracy-"))
    settings = Settings(model=model.name, no_auth=True, data_dir=data, cache_dir=data, batching=batching)
    url, stop = _start_server(replace(settings, max_streams=streams + 1), model=model)
    try:
        plans = [stream_plan(recs, i * len(recs) // streams) for i in range(streams)]

        async def run() -> list[Any]:
            return await asyncio.gather(*(drive(url, audio, utts) for audio, utts, _ in plans))

        results = asyncio.run(run())
    finally:
        stop()
    pairs = [
        p
        for (_, utts, refs), r in zip(plans, results, strict=True)
        for p in by_utterance(utts, refs, r.words_heard)
    ]
    final = [x for r in results for x in r.final]
    return {
        "wer": corpus_wer(pairs),
        "missing_finals": sum(r.missing_finals for r in results),
        "end_to_final_s": {q: round(percentile(final, q), 3) for q in (50, 95)},
        "pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny.en:int8", "tiny.en:float32", "base:int8"])
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--corpus", choices=["pocketsphinx", "librivox"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every hypothesis")
    args = parser.parse_args()
    recs = recordings(args.corpus)
    words = sum(len(r.transcript.split()) for r in recs)
    print(f"{len(recs)} recordings, {words} words, {sum(r.seconds for r in recs):.1f} s", flush=True)
    report: list[dict[str, Any]] = []
    for spec in args.models:
        name, _, compute = spec.partition(":")
        model = load_model(name, device="cpu", compute_type=compute or "auto")
        row: dict[str, Any] = {"model": name, "compute_type": model.compute_type}
        row["offline"] = offline(model, recs, args.streams)
        row["streaming"] = {f"streams_{n}": streaming(model, recs, n, batching=True) for n in args.streams}
        report.append(row)
        cells = [f"offline, file by file {100 * row['offline']['files']['wer']:.1f} %"]
        for n in args.streams:
            s, o = row["streaming"][f"streams_{n}"], row["offline"][f"streams_{n}"]
            cells.append(
                f"{n} stream(s): offline {100 * o['wer']:.1f} %, live {100 * s['wer']:.1f} % "
                f"(Δ {100 * (s['wer'] - o['wer']):+.1f}; end→final p50/p95 "
                f"{s['end_to_final_s'][50]:.2f}/{s['end_to_final_s'][95]:.2f} s; "
                f"missing {s['missing_finals']})"
            )
        print(f"{name} {model.compute_type}: " + " | ".join(cells), flush=True)
        if args.verbose:
            for kind in ("offline", "streaming"):
                for key, result in row[kind].items():
                    for ref, hyp in result["pairs"]:
                        print(f"  [{kind} {key}] {ref!r}\n  {'':>{len(kind + key) + 3}} {hyp!r}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Speaker labels (``diarize=true``) on conversations of distinct real speakers, streamed live.

    .venv/bin/python benchmarks/speakers.py                 # 4 streams, 16 turns each, + 5-min monologue
    .venv/bin/python benchmarks/speakers.py --streams 4 --turns 16 --mono-minutes 5 --json out.json

Conversations (tests/conversations.py): two and three distinct people from tests/fixtures (the
LibriVox reader, the cards reader, the command speaker) and the Piper voice as at most one
speaker; turns are whole recordings (1-8 s), pauses 0.2-1.0 s. N streams run concurrently at
real time against a real server on loopback, first with ``diarize=false`` then, on the same
audio, with ``diarize=true``, so the latency cost is measured side by side in one run.

Reported: word attribution (share of final words whose label is their turn's speaker, under the
best one-to-one mapping of labels to speakers, per stream), DER (10 ms frames; reference = the
turns, hypothesis = the labelled words' spans, so pauses inside a turn count as missed speech:
an upper bound), speakers found vs true, end of turn → final latency p50/p95 (turns followed by
a pause long enough to end an utterance), and, for one voice streamed for ``--mono-minutes``,
the share of its words carrying its majority label.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conversations import Turn, attribution, conversation, monologue, speaker_of, voices

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.cli.bench import _start_server, percentile
from voxindex.config import Settings
from voxindex.loading import load_model

CASTS = [
    ["librivox", "cards"],
    ["librivox", "piper"],
    ["cards", "command", "piper"],
    ["librivox", "cards", "piper"],
    ["cards", "command"],
    ["librivox", "command", "piper"],
]
FRAME_S = 0.1


async def drive(url: str, audio: Float32Array, diarize: bool, speed: float = 1.0) -> list[tuple[float, Any]]:
    import websockets

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(FRAME_S * SAMPLE_RATE) * 2
    messages: list[tuple[float, Any]] = []
    async with websockets.connect(f"{url}/v1/stream?diarize={str(diarize).lower()}", max_size=None) as ws:
        t0 = time.monotonic()

        async def send() -> None:
            for i in range(0, len(pcm), step):
                await ws.send(pcm[i : i + step])
                await asyncio.sleep(max(0.0, t0 + (i + step) / 2 / SAMPLE_RATE / speed - time.monotonic()))
            await ws.send(json.dumps({"type": "close"}))

        sender = asyncio.create_task(send())
        async for raw in ws:
            messages.append((time.monotonic() - t0, json.loads(raw)))
        sender.cancel()
    return messages


def latencies(messages: list[tuple[float, Any]], turns: list[Turn], endpoint_s: float = 0.5) -> list[float]:
    """End of turn → the final covering it, for turns followed by a pause that ends an utterance."""
    out = []
    for i, turn in enumerate(turns):
        pause = (turns[i + 1].start if i + 1 < len(turns) else turn.end + 9) - turn.end
        if pause < endpoint_s:
            continue
        arrivals = [at for at, m in messages if m["type"] == "final" and m["end"] >= turn.end - 0.5]
        if arrivals:
            out.append(arrivals[0] - turn.end)
    return out


def der(words: list[dict[str, Any]], turns: list[Turn]) -> float:
    """Frame DER (10 ms) with the best label mapping; hypothesis frames are the words' spans."""
    n = int((max(t.end for t in turns) + 2) * 100)
    ref = np.full(n, -1)
    hyp = np.full(n, -1)
    for t in turns:
        ref[int(t.start * 100) : int(t.end * 100)] = t.speaker
    for w in words:
        hyp[int(w["start"] * 100) : max(int(w["start"] * 100) + 1, int(w["end"] * 100))] = w["speaker"]
    from itertools import permutations

    labels = sorted(set(hyp[hyp >= 0].tolist()))
    truths = sorted(set(ref[ref >= 0].tolist()))
    best = 0
    slots = labels + [-2] * max(0, len(truths) - len(labels))
    for perm in permutations(slots, len(truths)):
        mapping = dict(zip(perm, truths, strict=True))
        mapped = np.array([mapping.get(h, -3) if h >= 0 else -1 for h in hyp])
        best = max(best, int(np.sum((ref >= 0) & (mapped == ref))))
    speech = int(np.sum(ref >= 0))
    false_alarm = int(np.sum((ref < 0) & (hyp >= 0)))
    return (speech - best + false_alarm) / speech


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--turns", type=int, default=16)
    ap.add_argument("--mono-minutes", type=float, default=5.0)
    ap.add_argument("--mono-speed", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=2, help="off/on rounds, alternating")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import make_synth

    clips = voices(make_synth())
    settings = Settings(model=args.model, no_auth=True, max_streams=max(8, args.streams + 1))
    model = load_model(args.model, settings.device, settings.cache_dir, settings.compute_type)
    url, stop = _start_server(settings, model)
    casts = [CASTS[i % len(CASTS)] for i in range(args.streams)]
    talks = [conversation(clips, cast, args.turns, seed=i) for i, cast in enumerate(casts)]
    report: dict[str, Any] = {"streams": args.streams, "turns": args.turns, "model": args.model}
    try:
        lat_of: dict[bool, list[float]] = {False: [], True: []}
        runs: list[list[tuple[float, Any]]] = []
        for _ in range(args.repeats):
            for on in (False, True):  # alternating, so drift in the machine's load hits both

                async def run(on: bool = on) -> list[list[tuple[float, Any]]]:
                    return list(await asyncio.gather(*(drive(url, audio, on) for audio, _ in talks)))

                runs = asyncio.run(run())
                lat_of[on] += [
                    x for msgs, (_, t) in zip(runs, talks, strict=True) for x in latencies(msgs, t)
                ]
        last_on = runs
        for diarize in (False, True):
            runs = last_on
            lat = lat_of[diarize]
            row: dict[str, Any] = {
                "p50_s": round(percentile(lat, 50), 3),
                "p95_s": round(percentile(lat, 95), 3),
                "n": len(lat),
            }
            if diarize:
                per_stream = []
                for msgs, (_, turns), cast in zip(runs, talks, casts, strict=True):
                    words = [w for _, m in msgs if m["type"] == "final" for w in m["words"]]
                    pairs = [
                        (t, w["speaker"])
                        for w in words
                        if (t := speaker_of(turns, w["start"], w["end"])) is not None
                    ]
                    per_stream.append(
                        {
                            "cast": "+".join(cast),
                            "words": len(pairs),
                            "attribution": round(attribution(pairs), 4),
                            "der": round(der(words, turns), 4),
                            "speakers_found": len({w["speaker"] for w in words}),
                        }
                    )
                    print(per_stream[-1], flush=True)
                total = sum(s["words"] for s in per_stream)
                row["attribution"] = round(sum(s["attribution"] * s["words"] for s in per_stream) / total, 4)
                row["der"] = round(float(np.mean([s["der"] for s in per_stream])), 4)
                row["per_stream"] = per_stream
            report["diarize_on" if diarize else "diarize_off"] = row
            print(
                ("diarize=true " if diarize else "diarize=false"),
                {k: v for k, v in row.items() if k != "per_stream"},
            )
        if args.mono_minutes > 0:
            audio = monologue(clips["librivox"], args.mono_minutes * 60, seed=7)
            msgs = asyncio.run(drive(url, audio, True, args.mono_speed))
            labels = [w["speaker"] for _, m in msgs if m["type"] == "final" for w in m["words"]]
            top = max(set(labels), key=labels.count)
            report["monologue"] = {
                "minutes": round(audio.size / SAMPLE_RATE / 60, 2),
                "words": len(labels),
                "one_label_share": round(labels.count(top) / len(labels), 4),
                "labels": len(set(labels)),
            }
            print("monologue", report["monologue"])
        on, off = report["diarize_on"], report["diarize_off"]
        report["p95_cost_s"] = round(on["p95_s"] - off["p95_s"], 3)
        print(f"p95 end→final: off {off['p95_s']} s, on {on['p95_s']} s, cost {report['p95_cost_s']:+.3f} s")
    finally:
        stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Turn-taking: how soon the end of a turn is known, and how often a pause is taken for one.

    .venv/bin/python benchmarks/turns.py                                 # 1 and 4 streams, all modes
    .venv/bin/python benchmarks/turns.py --streams 1 --modes fused --json out.json

The turns of ``tests/turn_corpus.py`` (LibriVox prose, the PocketSphinx cards and command, some
cut mid-sentence with a 0.7–1.2 s pause put in; Piper dialogue cut at "for", "is", "could"),
played as a user talking to an agent: 2.5 s of silence between turns. Each stream is the
unmodified ``livekit-plugins-deepgram`` ``STTv2`` on ``/v2/listen`` of a real ``voxindex serve``
process on loopback (its own process, as deployed: a server in the benchmark's process would
share its GIL with the clients), fed 20 ms frames at real-time pace; event times are the
client's clock.

Scored as LiveKit's eot-bench scores: every pause of ≥ 100 ms inside a turn is a *hold*, the
end of its speech the *end*. A hold is *cut off* when an ``EndOfTurn`` says the turn ended in
it (its ``audio_window_end`` falls in the hold); "cut ≤ 300 ms / ≤ 600 ms" counts the cut-offs
that came within that budget of the hold's start, "cut" all of them. At an end: end of speech →
``EndOfTurn`` (p50, p95) and → ``EagerEndOfTurn`` (how many turns got one, p50), the eager
end's lead over the end of turn, and how many eager ends were resumed (a hold, or followed by a
different final). Turn WER: each turn's ``EndOfTurn`` transcripts against its text. Modes, one
server each on the same loaded model (``VOXINDEX_TURN_EVIDENCE``): ``silence`` (today's
500 ms endpointing), ``acoustic`` (Smart Turn v3.2 alone), ``fused`` (engine/turns/). The
``listen`` row is ``/v1/listen`` with the Deepgram live plugin on the same audio: its finals'
WER, and how many holds it finalized at.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import corpus_wer, make_synth
from tests.turn_corpus import Turn, corpus, session

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.cli.bench import percentile

FRAME_S = 0.02
VERBOSE = False
STAGGER_S = 0.77  # streams start this far apart, so their pauses do not line up


@dataclass
class Heard:
    """What one stream's client saw: (client time, event type, text, audio end) per event."""

    events: list[tuple[float, str, str, float]] = field(default_factory=list)


async def play(url: str, audio: Float32Array, delay: float, flux: bool, eager: float | None) -> Heard:
    """Stream ``audio`` through the real plugin; every event with its time on the audio's clock."""
    from livekit import rtc
    from livekit.agents import stt as lk_stt
    from livekit.plugins import deepgram

    await asyncio.sleep(delay)
    heard = Heard()
    async with aiohttp.ClientSession() as http:
        if flux:
            stt: lk_stt.STT = deepgram.STTv2(
                api_key="bench",
                base_url=f"{url}/v2/listen",
                http_session=http,
                eot_threshold=0.7,
                **({"eager_eot_threshold": eager} if eager is not None else {}),
            )
        else:
            stt = deepgram.STT(
                api_key="bench", base_url=f"{url}/v1/listen", http_session=http, interim_results=True
            )
        stream = stt.stream()
        t0 = time.perf_counter()

        async def collect() -> None:
            async for ev in stream:
                alt = ev.alternatives[0] if ev.alternatives else None
                heard.events.append(
                    (
                        time.perf_counter() - t0,
                        ev.type.value,
                        alt.text if alt else "",
                        alt.end_time if alt else 0.0,
                    )
                )

        collector = asyncio.create_task(collect())
        pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
        step = round(FRAME_S * SAMPLE_RATE)
        for i in range(0, pcm.size, step):
            chunk = pcm[i : i + step]
            stream.push_frame(rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, chunk.size))
            await asyncio.sleep(max(0.0, t0 + (i + step) / SAMPLE_RATE - time.perf_counter()))
        stream.end_input()
        await asyncio.wait_for(collector, 60)
        await stream.aclose()
        await stt.aclose()
    return heard


def score(heard: Heard, placed: list[tuple[Turn, float]], flux: bool) -> dict[str, Any]:
    """eot-bench's measures for one stream (see the module's docstring)."""
    finals = [(t, text, end) for t, kind, text, end in heard.events if kind == "final_transcript"]
    eagers = [(t, text, end) for t, kind, text, end in heard.events if kind == "preflight_transcript"]
    holds = [(offset + a, offset + b) for turn, offset in placed for a, b in turn.holds]
    cuts = []  # seconds from the hold's start to the cut-off
    for t, text, end in finals:
        for a, b in holds:
            if a - 0.05 <= end <= b:
                cuts.append(t - a)
                if VERBOSE:
                    print(f"  cut off at {a:.2f}-{b:.2f} after {t - a:.2f} s: {text!r}")
                break
    ends, eager_ends, leads, refs, hyps = [], [], [], [], []
    for turn, offset in placed:
        speech_end = offset + turn.end
        window = offset + turn.audio.size / SAMPLE_RATE + 2.4  # up to the next turn
        mine = [(t, text, end) for t, text, end in finals if offset - 0.1 <= end <= speech_end + 0.5]
        refs.append(turn.text)
        hyps.append(" ".join(text for _, text, _ in mine))
        at_end = [t for t, _, end in mine if end > speech_end - 0.5 and t <= window]
        if at_end:
            ends.append(at_end[0] - speech_end)
        if VERBOSE:
            print(f"  {turn.name:12} end→EndOfTurn {at_end[0] - speech_end if at_end else None}", mine)
        eager = [t for t, _, end in eagers if speech_end - 0.5 < end <= speech_end + 0.5 and t <= window]
        if eager and at_end:
            eager_ends.append(eager[0] - speech_end)
            leads.append(at_end[0] - eager[0])
    resumed = 0
    for t, text, _ in eagers:  # resumed: the next final says more (or other) than the eager end
        nxt = next((f for f in finals if f[0] >= t), None)
        resumed += nxt is None or nxt[1] != text
    return {
        "holds": len(holds),
        "cut": len(cuts),
        "cut_300": sum(c <= 0.3 for c in cuts),
        "cut_600": sum(c <= 0.6 for c in cuts),
        "turns": len(placed),
        "ends": ends,
        "eager_ends": eager_ends,
        "leads": leads,
        "eagers": len(eagers),
        "resumed": resumed,
        "pairs": list(zip(refs, hyps, strict=True)),
    }


def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        out[key] = [v for value in values for v in value] if isinstance(values[0], list) else sum(values)
    return out


def summary(name: str, streams: int, r: dict[str, Any]) -> dict[str, Any]:
    holds = max(1, r["holds"])
    return {
        "mode": name,
        "streams": streams,
        "holds": r["holds"],
        "cut_300_pct": round(100 * r["cut_300"] / holds, 1),
        "cut_600_pct": round(100 * r["cut_600"] / holds, 1),
        "cut_pct": round(100 * r["cut"] / holds, 1),
        "end_p50_s": round(percentile(r["ends"], 50), 3),
        "end_p95_s": round(percentile(r["ends"], 95), 3),
        "ended_turns": f"{len(r['ends'])}/{r['turns']}",
        "eager_turns_pct": round(100 * len(r["eager_ends"]) / max(1, r["turns"]), 1),
        "eager_p50_s": round(percentile(r["eager_ends"], 50), 3),
        "eager_lead_p50_s": round(percentile(r["leads"], 50), 3),
        "resumed_pct": round(100 * r["resumed"] / max(1, r["eagers"]), 1),
        "wer_pct": round(100 * corpus_wer(r["pairs"]), 1),
    }


async def level(url: str, turns: list[Turn], streams: int, flux: bool, eager: float | None) -> dict[str, Any]:
    plans = [session(turns[i % len(turns) :] + turns[: i % len(turns)]) for i in range(streams)]
    heard = await asyncio.gather(
        *(play(url, audio, i * STAGGER_S, flux, eager) for i, (audio, _) in enumerate(plans))
    )
    return merge([score(h, placed, flux) for h, (_, placed) in zip(heard, plans, strict=True)])


def serve(model: str, compute_type: str, evidence: str, data: Path) -> tuple[str, Any]:
    """A ``voxindex serve`` process deciding turns by ``evidence``; (its URL, a stop function)."""
    from tests.api.conftest import ServerProcess

    env = {"VOXINDEX_TURN_EVIDENCE": evidence, "VOXINDEX_MAX_STREAMS": "16", "VOXINDEX_LOG_LEVEL": "warning"}
    args = ["--no-auth", "--model", model, "--compute-type", compute_type]
    server = ServerProcess(data / evidence, data / "cache", *args, env=env)

    def stop() -> None:
        server.kill(signal.SIGTERM)

    return server.url, stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--compute-type", default="auto")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--modes", nargs="+", default=["silence", "acoustic", "fused", "listen"])
    ap.add_argument("--eager", type=float, default=0.4, help="eager_eot_threshold the client sets")
    ap.add_argument("--no-piper", action="store_true", help="the human recordings only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--verbose", action="store_true", help="each turn's and each cut-off's times")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    turns = corpus(None if args.no_piper else make_synth())
    rows = []
    data = Path(tempfile.mkdtemp(prefix="turns-"))
    for mode in args.modes:
        url, stop = serve(args.model, args.compute_type, "fused" if mode == "listen" else mode, data)
        try:
            for n in args.streams:
                result = asyncio.run(level(url, turns, n, mode != "listen", args.eager))
                row = summary(mode, n, result)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            stop()
    if args.json:
        args.json.write_text(
            json.dumps({"model": f"{args.model} {args.compute_type}", "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()

"""Soak: a real server for a long time under a steady stream and churning clients.

    .venv/bin/python benchmarks/soak.py --minutes 60 --json soak.json

A real ``voxindex serve`` process (tiny.en, the default store in a temporary data directory)
on loopback, and against it:

- **one long stream** at real-time pace: every real recording the project has
  (``tests/fixtures``), over and over, with pauses of 0.8–3 s between them and a longer
  pause (5–20 s) now and then; each utterance's end of speech → final (client clock) is
  measured, and an utterance with no final by the end counts as lost;
- **churn clients** (``--churn`` at a time): each connects, streams 2–5 s of speech and
  vanishes without a word, half of them by aborting the TCP connection (no close frame,
  no FIN handshake), the others by a plain socket close; then the next one comes.

Every ``--sample-s`` it samples the server's RSS, open file descriptors and threads
(``/proc/PID``) and the end → final of the utterances finalized in that interval. The
summary compares the first quarter with the last: a leak or a slowdown shows as a trend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import recordings

from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file
from voxindex.cli.bench import speech_span

FRAME_S = 0.1


@dataclass
class Sample:
    t: float  # seconds since the soak started
    rss_mb: float
    fds: int
    threads: int
    finals: int  # utterances finalized in this interval
    end_to_final_p50: float | None


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    utterances: int = 0  # utterances of the long stream whose speech ended
    finalized: int = 0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (when, end → final)
    churn: int = 0  # churn connections made
    churn_aborted: int = 0
    churn_refused: int = 0
    missed: list[dict[str, Any]] = field(default_factory=list)  # utterances with no final


def proc_stats(pid: int) -> tuple[float, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def pcm16(audio: Float32Array) -> bytes:
    return bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


class LongStream:
    """The steady stream: clips and pauses generated as it goes, so it lasts any duration."""

    def __init__(self, clips: list[Float32Array], names: list[str], rng: random.Random, soak: Soak) -> None:
        self.clips, self.names, self.rng, self.soak = clips, names, rng, soak
        self.order: list[str] = []  # the recording each utterance is
        self.ends: list[float] = []  # stream time where each utterance's speech ends
        self.starts: list[float] = []
        self.sent_at: dict[int, float] = {}  # utterance → wall time its last speech sample was sent
        self.done: set[int] = set()

    def pieces(self) -> Any:
        t = 0.0
        k = 0
        while True:
            pause = self.rng.uniform(5, 20) if self.rng.random() < 0.08 else self.rng.uniform(0.8, 3.0)
            silence = np.zeros(int(pause * SAMPLE_RATE), np.float32)
            yield silence, None
            t += silence.size / SAMPLE_RATE
            clip = self.clips[k % len(self.clips)]
            begin, end = speech_span(clip)
            self.order.append(self.names[k % len(self.names)])
            self.starts.append(t + begin)
            self.ends.append(t + end)
            yield clip, len(self.ends) - 1
            t += clip.size / SAMPLE_RATE
            k += 1

    def heard(self, message: dict[str, Any], now: float) -> None:
        """A final covers the utterances it overlaps: each gets its end → final once."""
        for i, (a, b) in enumerate(zip(self.starts, self.ends, strict=True)):
            if i in self.done or i not in self.sent_at:
                continue
            if message["start"] < b and message["end"] > a:
                self.done.add(i)
                self.soak.finalized += 1
                self.soak.latencies.append((now, now - self.sent_at[i]))

    async def run(self, url: str, deadline: float, t0: float) -> None:
        async with websockets.connect(f"{url}/v1/stream", max_size=None) as ws:
            await ws.recv()  # ready

            async def receive() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "final":
                        self.heard(message, time.monotonic())

            receiver = asyncio.create_task(receive())
            start = time.monotonic()
            sent = 0.0
            for audio, utterance in self.pieces():
                if time.monotonic() >= deadline:
                    break
                step = int(FRAME_S * SAMPLE_RATE)
                for i in range(0, audio.size, step):
                    await ws.send(pcm16(audio[i : i + step]))
                    sent += min(step, audio.size - i) / SAMPLE_RATE
                    await asyncio.sleep(max(0.0, start + sent - time.monotonic()))
                if utterance is not None:  # its speech ended when that sample was due to be sent
                    self.sent_at[utterance] = start + self.ends[utterance]
                    self.soak.utterances += 1
            await ws.send(pcm16(np.zeros(int(1.5 * SAMPLE_RATE), np.float32)))
            await ws.send(json.dumps({"type": "close"}))
            try:
                async with asyncio.timeout(30):
                    await receiver
            except (TimeoutError, websockets.ConnectionClosed):
                pass
        self.soak.missed = [
            {
                "stream_s": round(self.starts[i], 2),
                "at_s": round(self.sent_at[i] - t0, 1),
                "recording": self.order[i],
            }
            for i in sorted(self.sent_at)
            if i not in self.done
        ]


async def churn(url: str, clips: list[Float32Array], rng: random.Random, soak: Soak, deadline: float) -> None:
    """Connect, stream a few seconds, vanish; again until the deadline."""
    while time.monotonic() < deadline:
        clip = clips[rng.randrange(len(clips))]
        seconds = rng.uniform(2, 5)
        audio = np.concatenate([clip, np.zeros(int(SAMPLE_RATE * 5), np.float32)])[
            : int(seconds * SAMPLE_RATE)
        ]
        abort = rng.random() < 0.5
        soak.churn += 1
        try:
            ws = await websockets.connect(f"{url}/v1/stream", max_size=None)
            ready = json.loads(await ws.recv())
            if ready["type"] != "ready":
                soak.churn_refused += 1
                await ws.close()
                continue
            step = int(FRAME_S * SAMPLE_RATE)
            for i in range(0, audio.size, step):
                await ws.send(pcm16(audio[i : i + step]))
                await asyncio.sleep(FRAME_S)
            if abort:  # gone without a close frame: the connection is reset
                soak.churn_aborted += 1
                ws.transport.abort()
            else:  # gone without asking for a close: the socket just closes
                ws.transport.close()
        except (OSError, websockets.WebSocketException):
            soak.churn_refused += 1
        await asyncio.sleep(rng.uniform(0.3, 1.5))


async def sampler(pid: int, soak: Soak, every: float, deadline: float, t0: float) -> None:
    seen = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))
        rss, fds, threads = proc_stats(pid)
        fresh = [lat for _, lat in soak.latencies[seen:]]
        seen = len(soak.latencies)
        p50 = round(statistics.median(fresh), 3) if fresh else None
        soak.samples.append(
            Sample(round(time.monotonic() - t0, 1), round(rss, 1), fds, threads, len(fresh), p50)
        )
        s = soak.samples[-1]
        print(
            f"{s.t:7.0f} s  rss {s.rss_mb:7.1f} MB  fds {s.fds:3d}  threads {s.threads:3d}  "
            f"finals {s.finals:3d}  end→final p50 {s.end_to_final_p50}  churn {soak.churn}",
            flush=True,
        )


def start_server(data_dir: Path, cache_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (data_dir.parent / "server.log").open("w")
    env = {**os.environ, "VOXINDEX_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-m", "voxindex.cli", "serve", "--no-auth", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start; see {log.name}")
        time.sleep(0.2)


def quarter(soak: Soak, t0: float, which: int, length: float) -> float | None:
    lo, hi = t0 + which * length / 4, t0 + (which + 1) * length / 4
    values = [lat for when, lat in soak.latencies if lo <= when < hi]
    return round(statistics.median(values), 3) if values else None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    recs = recordings()
    clips = [decode_file(r.path) for r in recs]
    root = Path(tempfile.mkdtemp(prefix="voxindex-soak-"))
    port = args.port
    proc = start_server(root / "data", root / "cache", port)
    url = f"ws://127.0.0.1:{port}"
    soak = Soak()
    length = args.minutes * 60
    t0 = time.monotonic()
    deadline = t0 + length
    try:
        tasks = [LongStream(clips, [r.path.name for r in recs], rng, soak).run(url, deadline, t0)]
        tasks += [
            churn(url, clips, random.Random(args.seed + 1 + i), soak, deadline) for i in range(args.churn)
        ]
        tasks.append(sampler(proc.pid, soak, args.sample_s, deadline, t0))
        await asyncio.gather(*tasks)
        rss, fds, threads = proc_stats(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    samples = soak.samples
    return {
        "minutes": args.minutes,
        "utterances": soak.utterances,
        "finalized": soak.finalized,
        "end_to_final_p50_first_quarter": quarter(soak, t0, 0, length),
        "end_to_final_p50_last_quarter": quarter(soak, t0, 3, length),
        "end_to_final_p95": round(float(np.percentile([lat for _, lat in soak.latencies], 95)), 3)
        if soak.latencies
        else None,
        "rss_mb": [min(s.rss_mb for s in samples), max(s.rss_mb for s in samples)] if samples else None,
        "fds": [min(s.fds for s in samples), max(s.fds for s in samples)] if samples else None,
        "threads": [min(s.threads for s in samples), max(s.threads for s in samples)] if samples else None,
        "at_end": {"rss_mb": round(rss, 1), "fds": fds, "threads": threads},
        "churn": soak.churn,
        "churn_aborted": soak.churn_aborted,
        "churn_refused": soak.churn_refused,
        "missed": soak.missed,
        "samples": [asdict(s) for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--churn", type=int, default=2, help="churn clients at a time")
    parser.add_argument("--sample-s", type=float, default=60.0, dest="sample_s")
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Recordings benchmark: background transcription throughput, alone and beside live streams.

    .venv/bin/python benchmarks/recordings_bench.py [--minutes 30] [--streams 0 2 4] [--live-seconds 60]

For each level N a fresh in-process server (temporary data dir) gets one long recording of real
human speech (the bundled CMU clips, 0.8 s apart, repeated to --minutes) uploaded through
``POST /v1/recordings``. With N > 0, N live WebSocket streams (``voxindex bench``'s real-time
clients) run for --live-seconds while the recording transcribes. Reported:

- the recording's throughput (audio seconds per wall second) while the live streams ran and
  overall (upload accepted → indexed);
- the live streams' end-of-speech → final p50/p95, and the same with no recording running.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from voxindex.audio import SAMPLE_RATE, decode_file
from voxindex.cli.bench import GAP_S, _start_server, run_level
from voxindex.config import Settings
from voxindex.samples import samples


def long_recording(minutes: float) -> bytes:
    clips = [decode_file(s.path) for s in samples()]
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    parts, total, k = [], 0, 0
    while total < minutes * 60 * SAMPLE_RATE:
        clip = clips[k % len(clips)]
        parts += [clip, gap]
        total += clip.size + gap.size
        k += 1
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return out.getvalue()


def status(url: str, recording_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/recordings/{recording_id}", timeout=30).json())


def level(settings: Settings, media: bytes, streams: int, live_seconds: float) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="voxindex-recbench-"))
    url, stop = _start_server(replace(settings, data_dir=data_dir, no_auth=True, max_streams=streams + 2))
    try:
        row: dict[str, Any] = {"streams": streams}
        if streams:
            baseline = asyncio.run(run_level(url, streams, live_seconds))
            row["live_alone_final_s"] = baseline["final_s"]
        response = httpx.post(f"{url}/v1/recordings", files={"file": ("long.wav", media)}, timeout=600)
        recording_id = response.json()["id"]
        while status(url, recording_id)["status"] == "queued":  # decoding and VAD
            time.sleep(0.1)
        started = time.monotonic()
        if streams:
            live = asyncio.run(run_level(url, streams, live_seconds))
            during = status(url, recording_id)
            row["live_with_recording_final_s"] = live["final_s"]
            row["live_missing_finals"] = live["missing_finals"]
            row["recording_x_real_time_during_live"] = round(
                during["done_s"] / (time.monotonic() - started), 1
            )
        while (s := status(url, recording_id))["status"] not in ("indexed", "failed"):
            time.sleep(0.5)
        row["recording_status"] = s["status"]
        row["recording_audio_s"] = s["duration"]
        row["recording_wall_s"] = round(time.monotonic() - started, 1)
        row["recording_x_real_time"] = round(s["duration"] / (time.monotonic() - started), 1)
        row["segments"] = s["segments"]
        return row
    finally:
        stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--streams", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    settings = Settings.from_env(model=args.model, device=args.device)
    media = long_recording(args.minutes)
    print(f"recording: {args.minutes:g} min of speech, {len(media) / 1e6:.1f} MB WAV", flush=True)
    for n in args.streams:
        print(json.dumps(level(settings, media, n, args.live_seconds)), flush=True)


if __name__ == "__main__":
    main()

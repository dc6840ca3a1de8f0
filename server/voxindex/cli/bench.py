"""``voxindex bench``: N concurrent real-time WebSocket streams of real speech, latency percentiles.

Each stream plays the bundled human recordings (in its own order, 0.8 s apart) at real-time
pace in 100 ms frames. For every utterance we know when its speech starts and ends in the
stream, so we measure (a) speech onset → first transcript message covering it and
(b) end of speech → the final covering it, on the wall clock of the client. With
``flush_after`` the client also sends ``{"type":"flush"}`` that many seconds after each
utterance's speech ends, as a LiveKit agent does when its own VAD or turn detector decides the
user stopped, and (c) flush → final is measured: the dead air before the agent can answer.
With ``force_end_turn`` the streams are Deepgram Flux streams (``/v2/listen``, ``eot_threshold``
1.0: only the client ends a turn) and the client sends ``ForceEndTurn`` instead: (c) is then
ForceEndTurn → ``EndOfTurn``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file
from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel
from voxindex.samples import samples

GAP_S = 0.8
FRAME_S = 0.1
REAL_TIME_P95_FINAL_S = 2.0


@dataclass
class Utterance:
    start: float
    end: float


@dataclass
class StreamResult:
    first_transcript: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    missing_finals: int = 0
    missing_at: list[float] = field(default_factory=list)
    words_heard: list[tuple[float, float, str]] = field(default_factory=list)  # finals' (start, end, word)
    flush_final: list[float] = field(default_factory=list)


def speech_span(clip: Float32Array) -> tuple[float, float]:
    """Where speech starts and ends inside a recording: 20 ms frames within 35 dB of the loudest."""
    frames = clip[: clip.size // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    voiced = np.flatnonzero(level > level.max() - 35)
    return voiced[0] * 0.02, (voiced[-1] + 1) * 0.02


def build_audio(index: int, seconds: float) -> tuple[Float32Array, list[Utterance]]:
    clips = [decode_file(s.path) for s in samples()]
    clips = clips[index % len(clips) :] + clips[: index % len(clips)]
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    parts: list[Float32Array] = [gap]
    utterances: list[Utterance] = []
    t = GAP_S
    k = 0
    while t < seconds:
        clip = clips[k % len(clips)]
        begin, end = speech_span(clip)
        utterances.append(Utterance(t + begin, t + end))
        parts += [clip, gap]
        t += clip.size / SAMPLE_RATE + GAP_S
        k += 1
    return np.concatenate(parts), utterances


FLUX = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000&eot_threshold=1.0"


async def drive(
    url: str,
    audio: Float32Array,
    utterances: list[Utterance],
    flush_after: float | None = None,
    force_end_turn: bool = False,
) -> StreamResult:
    import websockets

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(FRAME_S * SAMPLE_RATE) * 2
    messages: list[tuple[float, dict[str, Any]]] = []
    flushes = [u.end + flush_after for u in utterances] if flush_after is not None else []
    flushed: list[float] = []  # when each flush was sent, on the client's clock
    flush, close = ("ForceEndTurn", "CloseStream") if force_end_turn else ("flush", "close")
    headers = {"Authorization": "Token bench"} if force_end_turn else {}
    async with websockets.connect(
        url + (FLUX if force_end_turn else "/v1/stream"), additional_headers=headers
    ) as ws:
        ready = json.loads(await ws.recv())
        if ready.get("type") not in ("ready", "Connected"):
            raise RuntimeError(f"server refused the stream: {ready}")
        t0 = time.monotonic()

        async def send() -> None:
            for i in range(0, len(pcm), step):
                await ws.send(pcm[i : i + step])
                if len(flushed) < len(flushes) and (i + step) / 2 / SAMPLE_RATE >= flushes[len(flushed)]:
                    await ws.send(json.dumps({"type": flush}))
                    flushed.append(time.monotonic() - t0)
                await asyncio.sleep(max(0.0, t0 + (i + step) / 2 / SAMPLE_RATE - time.monotonic()))
            await ws.send(json.dumps({"type": close}))

        sender = asyncio.create_task(send())
        async for raw in ws:
            messages.append((time.monotonic() - t0, native(json.loads(raw))))
        sender.cancel()
    return score(messages, utterances, flushed)


def native(message: dict[str, Any]) -> dict[str, Any]:
    """A Flux turn message as the native message it is scored as: an ``Update`` is an interim, an
    ``EndOfTurn`` the final."""
    if message.get("type") != "TurnInfo":
        return message
    kind = {"Update": "interim", "EndOfTurn": "final"}.get(message["event"], "turn")
    start, end = message["audio_window_start"], message["audio_window_end"]
    return {"type": kind, "start": start, "end": end, "words": message["words"]}


def score(
    messages: list[tuple[float, dict[str, Any]]],
    utterances: list[Utterance],
    flushed: list[float] | None = None,
) -> StreamResult:
    """One stream's latencies from its messages (seconds since its first audio, message): for
    each utterance the first interim or final covering it, and its last final."""
    flushed = flushed or []
    words = [w for _, m in messages if m["type"] == "final" for w in m["words"]]
    result = StreamResult(words_heard=[(w["start"], w["end"], w["word"]) for w in words])
    for u in utterances:
        covering = [
            (at, m)
            for at, m in messages
            if m["type"] in ("interim", "final") and m["end"] >= u.start and m["start"] <= u.end
        ]
        if covering:
            result.first_transcript.append(covering[0][0] - u.start)
        finals = [at for at, m in covering if m["type"] == "final"]
        if finals and len(flushed) > len(result.final) + result.missing_finals:
            sent = flushed[len(result.final) + result.missing_finals]
            result.flush_final.append(max(0.0, finals[-1] - sent))
        if finals:
            result.final.append(finals[-1] - u.end)
        else:
            result.missing_finals += 1
            result.missing_at.append(round(u.start, 2))
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.array(values), q))


async def run_level(
    url: str, streams: int, seconds: float, flush_after: float | None = None, force_end_turn: bool = False
) -> dict[str, Any]:
    plans = [build_audio(i, seconds) for i in range(streams)]
    results = await asyncio.gather(*(drive(url, a, u, flush_after, force_end_turn) for a, u in plans))
    flush = [x for r in results for x in r.flush_final]
    first = [x for r in results for x in r.first_transcript]
    final = [x for r in results for x in r.final]
    missing = sum(r.missing_finals for r in results)
    p95 = percentile(final, 95)
    return {
        "streams": streams,
        "utterances": sum(len(u) for _, u in plans),
        "missing_finals": missing,
        "missing_at": {i: r.missing_at for i, r in enumerate(results) if r.missing_at},
        "first_transcript_s": {q: round(percentile(first, q), 3) for q in (50, 95, 99)},
        "final_s": {q: round(percentile(final, q), 3) for q in (50, 95, 99)},
        "final_mean_s": round(statistics.fmean(final), 3) if final else None,
        "flush_final_s": {q: round(percentile(flush, q), 3) for q in (50, 95, 99)} if flush else None,
        "real_time": missing == 0 and p95 <= REAL_TIME_P95_FINAL_S,
    }


def run_bench(
    settings: Settings,
    url: str | None,
    levels: list[int],
    seconds: float,
    as_json: bool,
    flush_after: float | None = None,
    force_end_turn: bool = False,
) -> int:
    stop = None
    if url is None:  # a throwaway server: its transcripts go to a temporary data dir
        data_dir = Path(tempfile.mkdtemp(prefix="voxindex-bench-"))
        url, stop = _start_server(
            replace(settings, max_streams=max(levels) + 1, data_dir=data_dir, no_auth=True)
        )
    report = []
    try:
        for n in levels:
            row = asyncio.run(run_level(url, n, seconds, flush_after, force_end_turn))
            report.append(row)
            if not as_json:
                flush = row["flush_final_s"]
                what = "ForceEndTurn→EndOfTurn" if force_end_turn else "flush→final"
                flushed = (
                    f"  {what} p50/p95/p99 = {flush[50]:.2f}/{flush[95]:.2f}/{flush[99]:.2f} s"
                    if flush
                    else ""
                )
                print(
                    f"streams={n:3d}  onset→first p50/p95/p99 = "
                    f"{row['first_transcript_s'][50]:.2f}/{row['first_transcript_s'][95]:.2f}/"
                    f"{row['first_transcript_s'][99]:.2f} s  end→final p50/p95/p99 = "
                    f"{row['final_s'][50]:.2f}/{row['final_s'][95]:.2f}/{row['final_s'][99]:.2f} s  "
                    f"missing={row['missing_finals']}  real_time={row['real_time']}{flushed}",
                    flush=True,
                )
    finally:
        if stop is not None:
            stop()
    keeping_up = [r["streams"] for r in report if r["real_time"]]
    summary = {
        "batching": settings.batching,
        "model": settings.model,
        "levels": report,
        "max_real_time_streams": max(keeping_up, default=0),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"largest real-time level: {summary['max_real_time_streams']} streams "
            f"(p95 end→final ≤ {REAL_TIME_P95_FINAL_S} s, no missing finals)"
        )
    return 0


def _start_server(settings: Settings, model: WhisperModel | None = None) -> tuple[str, Any]:
    import socket

    import uvicorn

    from voxindex.serve import create_app, wait_ready

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(replace(settings, port=port), model=model)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("bench server failed to start")
        time.sleep(0.05)
    wait_ready(app)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return f"ws://127.0.0.1:{port}", stop

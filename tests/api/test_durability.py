"""A real `voxindex serve` process killed with SIGKILL mid-stream loses no final it sent."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from tests.api.conftest import ServerProcess, pcm16
from tests.conftest import PROSE, Synth

GAP = np.zeros(12800, dtype=np.float32)


def Process(data_dir: Path, cache_dir: Path) -> ServerProcess:
    return ServerProcess(data_dir, cache_dir, "--no-auth")


@pytest.fixture
def dirs(tmp_path: Path, cache_dir: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "data", cache_dir


async def stream_until_finals(
    url: str, audio: np.ndarray, finals_wanted: int
) -> tuple[str, list[dict[str, object]]]:
    """Stream at real time; return as soon as ``finals_wanted`` finals arrived (audio still flowing)."""
    finals: list[dict[str, object]] = []
    async with websockets.connect(f"{url.replace('http', 'ws')}/v1/stream") as ws:
        ready = json.loads(await ws.recv())
        data = pcm16(audio)

        async def send() -> None:
            for i in range(0, len(data), 3200):
                await ws.send(data[i : i + 3200])
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(send())
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "final":
                finals.append(message)
                if len(finals) == finals_wanted:
                    break
        sender.cancel()
    return str(ready["stream_id"]), finals


def test_sigkill_mid_stream_keeps_every_final_sent(dirs: tuple[Path, Path], synth: Synth) -> None:
    data_dir, cache_dir = dirs
    audio = np.concatenate([GAP] + [np.concatenate([synth(s), GAP]) for s in PROSE[:5]])
    server = Process(data_dir, cache_dir)
    stream_id, finals = asyncio.run(stream_until_finals(server.url, audio, 2))
    server.kill()  # SIGKILL while the client is still sending: no shutdown hooks run
    assert len(finals) == 2

    server = Process(data_dir, cache_dir)
    try:
        stored = httpx.get(f"{server.url}/v1/streams/{stream_id}/transcript").json()["segments"]
        assert [s["text"] for s in stored][:2] == [f["text"] for f in finals]
        deadline = time.monotonic() + 30
        while (h := server.health())["index"]["vectors"] != h["index"]["segments"]:  # type: ignore[index]
            assert time.monotonic() < deadline, h
            time.sleep(0.1)
        for f in finals:
            for mode in ("keyword", "vector"):
                hits = httpx.get(
                    f"{server.url}/v1/search", params={"q": f["text"], "mode": mode, "stream_id": stream_id}
                ).json()["hits"]
                assert hits and hits[0]["text"] == f["text"], (mode, f["text"], hits)
    finally:
        server.kill(signal.SIGTERM)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_vector_index_is_rebuilt_from_the_store(
    dirs: tuple[Path, Path], synth: Synth, damage: str
) -> None:
    data_dir, cache_dir = dirs
    server = Process(data_dir, cache_dir)
    audio = np.concatenate([GAP, synth(PROSE[1]), GAP])
    stream_id, _ = asyncio.run(stream_until_finals(server.url, audio, 1))
    server.kill(signal.SIGTERM)  # a clean stop saves the index
    index_file = data_dir / "vectors.faiss"
    assert index_file.is_file()
    if damage == "corrupt":
        index_file.write_bytes(b"\x00garbage" * 100)
    else:
        index_file.unlink()
    server = Process(data_dir, cache_dir)
    try:
        health = server.health()["index"]
        assert health == {"segments": 1, "vectors": 1, "kind": "flat"}  # type: ignore[comparison-overlap]
        hits = httpx.get(
            f"{server.url}/v1/search", params={"q": "budget and schedule", "mode": "vector"}
        ).json()["hits"]
        assert hits[0]["stream_id"] == stream_id
        if damage == "corrupt":
            assert "rebuilding it from the store" in server.log.read_text()
    finally:
        server.kill(signal.SIGTERM)


def test_sigterm_mid_stream_finalizes_sends_finals_and_closes_1012(
    dirs: tuple[Path, Path], synth: Synth
) -> None:
    data_dir, cache_dir = dirs
    server = Process(data_dir, cache_dir)
    audio = np.concatenate([GAP, synth(PROSE[6]), GAP, synth(PROSE[7]), GAP])

    async def client() -> tuple[str, list[dict[str, object]], int | None, float]:
        messages: list[dict[str, object]] = []
        async with websockets.connect(f"{server.url.replace('http', 'ws')}/v1/stream") as ws:
            stream_id = str(json.loads(await ws.recv())["stream_id"])
            data = pcm16(audio)
            cut = int((GAP.size + synth(PROSE[6]).size + GAP.size + 16000) * 2)  # 1 s into the 2nd sentence
            for i in range(0, cut, 3200):
                await ws.send(data[i : i + 3200])
                await asyncio.sleep(0.1)
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)  # mid-utterance, the client still connected
            try:
                while True:
                    messages.append(json.loads(await ws.recv()))
            except websockets.ConnectionClosed:
                pass
            return stream_id, messages, ws.close_code, signalled

    stream_id, messages, code, signalled = asyncio.run(client())
    server.proc.wait(timeout=60)
    assert server.proc.returncode == 0 and time.monotonic() - signalled < 30  # within the grace period
    assert code == 1012
    kinds = [m["type"] for m in messages]
    assert "error" in kinds and kinds[-1] == "closed"
    assert [m["code"] for m in messages if m["type"] == "error"] == ["server_restarting"]
    finals = [str(m["text"]) for m in messages if m["type"] == "final"]
    assert len(finals) == 2  # the first sentence, and the part of the second said before SIGTERM
    server = Process(data_dir, cache_dir)
    try:
        stored = httpx.get(f"{server.url}/v1/streams/{stream_id}/transcript").json()["segments"]
        assert [s["text"] for s in stored] == finals
    finally:
        server.kill(signal.SIGTERM)


def test_a_second_sigterm_stops_at_once_and_keeps_the_store_whole(
    dirs: tuple[Path, Path], synth: Synth
) -> None:
    """Graceful draining would transcribe two minutes of queued audio first; a second SIGTERM
    cuts that short. Every final the client got is stored, and the store is intact."""
    data_dir, cache_dir = dirs
    server = ServerProcess(
        data_dir,
        cache_dir,
        "--no-auth",
        "--shutdown-grace-s",
        "120",
        env={"VOXINDEX_MAX_QUEUE_S": "300", "VOXINDEX_MAX_AUDIO_SPEED": "1000"},
    )
    speech = [x for text in PROSE for x in (synth(text), GAP)]
    audio = np.concatenate([GAP, *speech, *speech])  # about two minutes

    async def client() -> tuple[str, list[str], float]:
        finals: list[str] = []
        async with websockets.connect(f"{server.ws_url}/v1/stream", max_queue=None) as ws:
            stream_id = str(json.loads(await ws.recv())["stream_id"])
            data = pcm16(audio)
            for i in range(0, len(data), 32000):  # all of it, as fast as the server takes it
                await ws.send(data[i : i + 32000])
            while not finals:
                message = json.loads(await ws.recv())
                if message["type"] == "final":
                    finals.append(str(message["text"]))
            server.proc.send_signal(signal.SIGTERM)  # draining: finalize everything queued...
            await asyncio.sleep(1.0)
            second = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)  # ...no: stop now
            try:
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "final":
                        finals.append(str(message["text"]))
            except websockets.ConnectionClosed:
                pass
            return stream_id, finals, second

    stream_id, finals, second = asyncio.run(client())
    server.proc.wait(timeout=60)
    stopped = time.monotonic() - second
    assert server.proc.returncode == 0
    assert stopped < 15, f"took {stopped:.1f} s after the second SIGTERM"
    assert len(finals) < 2 * len(PROSE)  # it really was cut short
    with sqlite3.connect(data_dir / "transcripts.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    server = Process(data_dir, cache_dir)
    try:
        stored = httpx.get(f"{server.url}/v1/streams/{stream_id}/transcript").json()["segments"]
        assert [s["text"] for s in stored][: len(finals)] == finals  # every final sent is kept
    finally:
        server.kill(signal.SIGTERM)

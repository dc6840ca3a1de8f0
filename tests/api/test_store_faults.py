"""When the disk fills or the store fails: a clear error, no zombie streams, readiness that
tells the truth. Every test here uses a real filesystem: a small tmpfs the test mounts as the
data directory and fills with a real file (`ENOSPC` from the kernel, not a mock), remounted
read-only where that is the fault; a commit failing for one stream is a real SQLite trigger."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from tests.api.conftest import Server, free_port, pcm16, start_server
from tests.api.test_recordings import wav_bytes
from tests.conftest import PROSE, SmallDisk, Synth
from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel

GAP = np.zeros(12800, dtype=np.float32)  # 0.8 s: ends an utterance (500 ms endpointing)


@pytest.fixture
def served(small_disk: SmallDisk, tiny: WhisperModel, tmp_path: Path) -> Iterator[tuple[Server, SmallDisk]]:
    """A real server whose data directory is the small disk (a 64 KiB reserve: /readyz says
    full only when it really is)."""
    settings = Settings(
        no_auth=True,
        data_dir=small_disk.path / "data",
        cache_dir=tmp_path / "cache",
        store_min_free="64KiB",
        max_streams_per_tenant=2,
        idle_timeout_s=20,
    )
    srv, uv, thread = start_server(settings, tiny)
    yield srv, small_disk
    small_disk.free()
    uv.should_exit = True
    thread.join(timeout=30)


# ---------------- clients ----------------
@dataclass
class Seen:
    messages: list[dict[str, Any]]
    close_code: int | None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


async def handshake(ws_url: str) -> Seen:
    """Open a stream and read what the server says until it closes (or 3 s pass)."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(f"{ws_url}/v1/stream") as ws:
        try:
            async with asyncio.timeout(3):
                async for raw in ws:
                    messages.append(json.loads(raw))
        except (TimeoutError, websockets.ConnectionClosed):
            pass
        await ws.close()
        return Seen(messages, ws.close_code)


async def stream(
    ws_url: str, audio: np.ndarray, on_final: Any = None, on_ready: Any = None, speed: float = 2.0
) -> Seen:
    """Stream ``audio`` at ``speed`` x real time, then close; ``on_final(n)`` runs (in a thread)
    as the n-th final arrives, before anything else is sent."""
    messages: list[dict[str, Any]] = []
    data = pcm16(audio)
    async with websockets.connect(f"{ws_url}/v1/stream") as ws:

        async def send() -> None:
            t0 = time.monotonic()
            for i in range(0, len(data), 3200):
                await ws.send(data[i : i + 3200])
                await asyncio.sleep(max(0.0, t0 + (i + 3200) / 32000 / speed - time.monotonic()))
            await ws.send(json.dumps({"type": "close"}))

        sender: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(120):
                async for raw in ws:
                    message = json.loads(raw)
                    messages.append(message)
                    if message["type"] == "ready":
                        if on_ready is not None:
                            await asyncio.to_thread(on_ready, message["stream_id"])
                        sender = asyncio.create_task(send())
                    if message["type"] == "final" and on_final is not None:
                        await asyncio.to_thread(on_final, len([m for m in messages if m["type"] == "final"]))
        except websockets.ConnectionClosed:
            pass
        if sender is not None:
            sender.cancel()
        return Seen(messages, ws.close_code)


def speech(synth: Synth, n: int, first: int = 0) -> np.ndarray:
    return np.concatenate([GAP] + [np.concatenate([synth(s), GAP]) for s in PROSE[first : first + n]])


def readyz(srv: Server) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{srv.url}/readyz", timeout=10)
    return r.status_code, r.json()


def wait_readyz(srv: Server, status: int, timeout: float = 10.0) -> dict[str, Any]:
    """The readiness answer once it is ``status`` (probes are cached for 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = readyz(srv)
        if code == status:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def stored_texts(srv: Server, stream_id: str) -> list[str]:
    body = httpx.get(f"{srv.url}/v1/streams/{stream_id}/transcript", timeout=10).json()
    return [s["text"] for s in body["segments"]]


def deepgram_refusal(srv: Server) -> tuple[int, str]:
    async def connect() -> tuple[int, str]:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"{srv.ws}/v1/listen?encoding=linear16&sample_rate=16000"):
                pass
        response = refused.value.response
        return response.status_code, json.loads(response.body)["err_code"]

    return asyncio.run(connect())


def engine_streams(srv: Server) -> int:
    return len(srv.app.state.services.scheduler.streams)


# ---------------- the tests ----------------
def test_a_full_disk_refuses_streams_clearly_admits_none_and_recovers(
    served: tuple[Server, SmallDisk], synth: Synth
) -> None:
    srv, disk = served
    assert readyz(srv)[1]["checks"]["store"] == "ok"
    disk.fill()

    body = wait_readyz(srv, 503)
    assert body["checks"]["store"] == "full", body
    for _ in range(3):  # more attempts than the tenant's quota of 2: none may leak a slot
        seen = asyncio.run(handshake(srv.ws))
        assert seen.close_code == 1013, seen
        assert [m["code"] for m in seen.of("error")] == ["store_unavailable"], seen
        assert "is full" in seen.of("error")[0]["message"]
        assert not seen.of("ready")
    assert engine_streams(srv) == 0
    assert deepgram_refusal(srv) == (503, "SERVICE_UNAVAILABLE")  # the Deepgram route: HTTP 503
    metrics = httpx.get(f"{srv.url}/metrics").text
    free = [line for line in metrics.splitlines() if line.startswith("voxindex_store_free_bytes ")]
    assert free and float(free[0].split()[1]) < 64 * 1024, free

    disk.free()
    assert wait_readyz(srv, 200)["checks"]["store"] == "ok"

    async def two_at_once() -> list[Seen]:  # the whole quota is free again
        return list(await asyncio.gather(*(stream(srv.ws, speech(synth, 1, i)) for i in (1, 2))))

    for seen, i in zip(asyncio.run(two_at_once()), (1, 2), strict=True):
        assert seen.close_code == 1000 and not seen.of("error"), seen
        ready = seen.of("ready")[0]
        assert len(seen.of("final")) == 1
        assert stored_texts(srv, ready["stream_id"]) == [f["text"] for f in seen.of("final")]
        assert ("budget" if i == 1 else "marketing") in seen.of("final")[0]["text"]
    assert engine_streams(srv) == 0


def test_the_disk_filling_mid_stream_ends_it_after_its_stored_finals(
    served: tuple[Server, SmallDisk], synth: Synth
) -> None:
    srv, disk = served

    def fill_after_first(n: int) -> None:
        if n == 1:
            disk.fill()

    seen = asyncio.run(stream(srv.ws, speech(synth, 4), on_final=fill_after_first))
    errors = seen.of("error")
    assert [e["code"] for e in errors] == ["store_unavailable"], seen.messages
    assert seen.close_code == 1013
    assert seen.messages[-1] == errors[0]  # nothing after the error: no final that is not stored
    finals = [f["text"] for f in seen.of("final")]
    assert len(finals) == 1  # the second utterance's final could not be stored, so it was not sent
    assert engine_streams(srv) == 0
    disk.free()
    stream_id = seen.of("ready")[0]["stream_id"]
    assert stored_texts(srv, stream_id) == finals  # every final sent is stored, and only those
    assert wait_readyz(srv, 200)["checks"]["store"] == "ok"
    after = asyncio.run(stream(srv.ws, speech(synth, 1, 5)))
    assert after.close_code == 1000 and len(after.of("final")) == 1, after.messages


def test_one_streams_failing_commit_leaves_the_other_streams_transcript_complete(
    tiny: WhisperModel, tmp_path: Path, synth: Synth
) -> None:
    settings = Settings(no_auth=True, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    srv, uv, thread = start_server(settings, tiny)
    store_file = settings.data_dir / "transcripts.sqlite3"

    def fail_commits_of(stream_id: str) -> None:  # a real SQLite failure, for this stream only
        db = sqlite3.connect(store_file)
        db.execute(
            f"CREATE TRIGGER fail_{stream_id} BEFORE INSERT ON segments WHEN new.stream_id = '{stream_id}'"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END"
        )
        db.commit()
        db.close()

    try:
        audio = speech(synth, 3)

        async def both() -> tuple[Seen, Seen]:
            failing, healthy = await asyncio.gather(
                stream(srv.ws, audio, on_ready=fail_commits_of), stream(srv.ws, audio)
            )
            return failing, healthy

        failing, healthy = asyncio.run(both())
        assert [e["code"] for e in failing.of("error")] == ["store_unavailable"], failing.messages
        assert failing.close_code == 1013 and not failing.of("final")
        assert stored_texts(srv, failing.of("ready")[0]["stream_id"]) == []

        assert healthy.close_code == 1000 and not healthy.of("error"), healthy.messages
        finals = [f["text"] for f in healthy.of("final")]
        assert len(finals) == 3, finals  # every utterance, though it shared steps with the failure
        for words, text in zip(("morning", "budget", "marketing"), finals, strict=True):
            assert words in text.lower()
        assert stored_texts(srv, healthy.of("ready")[0]["stream_id"]) == finals
        assert engine_streams(srv) == 0
        code, body = readyz(srv)
        assert code == 200, body  # one stream's refused write does not make the store unready

        db = sqlite3.connect(store_file)  # now every write fails: readiness says so, then recovers
        db.execute("CREATE TRIGGER no_writes BEFORE INSERT ON probe BEGIN SELECT RAISE(ABORT, 'I/O'); END")
        db.commit()
        assert wait_readyz(srv, 503)["checks"]["store"] == "unwritable"
        db.execute("DROP TRIGGER no_writes")
        db.commit()
        db.close()
        assert wait_readyz(srv, 200)["checks"]["store"] == "ok"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def test_an_upload_the_disk_cannot_hold_is_refused_507_before_it_is_stored(
    served: tuple[Server, SmallDisk], synth: Synth
) -> None:
    srv, disk = served
    audio = np.concatenate([GAP, synth(PROSE[3]), GAP])
    data = wav_bytes(np.tile(audio, int(disk.free_bytes() / (audio.size * 2)) + 1))  # over the free space
    media = disk.path / "data" / "media"
    before = sorted(p.name for p in media.iterdir())
    r = httpx.post(f"{srv.url}/v1/recordings", files={"file": ("long.wav", data)}, timeout=30)
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "store_unavailable"
    assert sorted(p.name for p in media.iterdir()) == before  # nothing of it kept
    small = wav_bytes(audio)
    r = httpx.post(f"{srv.url}/v1/recordings", files={"file": ("fits.wav", small)}, timeout=30)
    assert r.status_code == 202, r.text  # one that fits is taken


# ---------------- start-up over a damaged or unwritable store ----------------
def serve_exits(data_dir: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    """``voxindex serve`` over ``data_dir``; it must exit by itself (it refuses to start)."""
    command = [sys.executable, "-m", "voxindex.cli", "serve", "--no-auth", "--port", str(free_port())]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir)],
        env={"VOXINDEX_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def a_store_with_segments(data_dir: Path, n: int = 400) -> Path:
    from voxindex.engine.events import Final
    from voxindex.engine.types import Word
    from voxindex.index.sqlite import Store

    store = Store(data_dir / "transcripts.sqlite3")
    store.create_stream("s1", "default", "tiny.en")
    for i in range(n):
        text = f"segment number {i} of a meeting about the budget and the schedule"
        store.commit_segment("s1", Final(i, text, i, i + 1.0, [Word(" budget", i, i + 1.0, 0.9)]), "tiny.en")
    store.close()
    return data_dir / "transcripts.sqlite3"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "damaged page"])
def test_start_up_over_a_damaged_store_refuses_and_leaves_it_untouched(tmp_path: Path, damage: str) -> None:
    path = a_store_with_segments(tmp_path / "data")
    raw = bytearray(path.read_bytes())
    if damage == "garbage":
        raw[:4096] = b"\x13" * 4096
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "empty":
        raw = bytearray()
    else:  # one b-tree page in the middle overwritten: only SQLite's own check finds it
        page = len(raw) // 4096 // 2
        raw[page * 4096 + 8 : page * 4096 + 400] = b"\xff" * 392
    path.write_bytes(bytes(raw))

    done = serve_exits(tmp_path / "data", tmp_path / "cache")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: store_corrupt: the transcript store {path} is damaged" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert path.read_bytes() == bytes(raw)  # never replaced by a new, empty store
    assert sorted(p.name for p in path.parent.iterdir()) == ["transcripts.sqlite3"]


@pytest.mark.parametrize("existing", [False, True])
def test_start_up_on_a_read_only_data_directory_refuses_with_the_path(
    small_disk: SmallDisk, tmp_path: Path, existing: bool
) -> None:
    disk = small_disk
    data_dir = disk.path / "data"
    if existing:
        path = a_store_with_segments(data_dir, 10)
        kept = path.read_bytes()
    else:
        data_dir.mkdir()
    disk.remount("ro")
    try:
        done = serve_exits(data_dir, tmp_path / "cache")
    finally:
        disk.remount("rw")
    assert done.returncode == 1, done.stdout + done.stderr
    what = "open" if existing else "create"
    expected = f"error: store_unavailable: cannot {what} the transcript store {data_dir}"
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    if existing:
        assert path.read_bytes() == kept

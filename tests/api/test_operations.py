"""Operating a server: liveness and readiness probes, warm start, Prometheus metrics, JSON logs."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

import voxindex.serve as app_module
from tests.api.conftest import Server, ServerProcess, pcm16, start_server
from tests.conftest import PROSE, Synth
from voxindex.api.auth import mint_token
from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel

GAP = np.zeros(16000, dtype=np.float32)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def speak(ws_url: str, audio: np.ndarray, speed: float = 1.0) -> tuple[str, list[dict[str, Any]]]:
    """Stream ``audio`` at ``speed`` x real time, close, return (stream id, messages)."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(ws_url) as ws:
        ready = json.loads(await ws.recv())
        data = pcm16(audio)

        async def read() -> None:
            async for raw in ws:
                messages.append(json.loads(raw))

        reader = asyncio.create_task(read())
        for i in range(0, len(data), 6400):
            await ws.send(data[i : i + 6400])
            await asyncio.sleep(0.2 / speed)
        await ws.send(json.dumps({"type": "close"}))
        await asyncio.wait_for(reader, 60)
    return str(ready["stream_id"]), messages


# ---------------- readiness ----------------
@pytest.fixture
def gated_server(tiny: WhisperModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real server whose start-up (model, index, warm-up) waits until the test opens the gate."""
    gate = threading.Event()
    real = app_module.start_services

    def gated(*args: Any, **kwargs: Any) -> Any:
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "start_services", gated)
    settings = Settings(no_auth=True, cache_dir=tmp_path, data_dir=tmp_path / "data", idle_timeout_s=20)
    srv, uv, thread = start_server(settings, tiny, ready=False)
    yield srv, gate
    gate.set()
    uv.should_exit = True
    thread.join(timeout=30)


def test_until_warmed_up_readyz_is_503_and_every_entry_point_says_not_ready(
    gated_server: tuple[Server, threading.Event], synth: Synth
) -> None:
    srv, gate = gated_server
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["warm"] == "pending" and ready.json()["checks"]["model"] == "loading"
        assert http.get("/healthz").status_code == 200  # alive: a slow load must not get it restarted
        assert value(scrape(srv.url), "voxindex_ready") == 0
        search = http.get("/v1/search", params={"q": "budget"})
        assert search.status_code == 503 and search.json()["error"]["code"] == "not_ready"
        assert search.headers["retry-after"]

    async def refused() -> tuple[dict[str, Any], int | None, int]:
        async with websockets.connect(f"{srv.ws}/v1/stream") as ws:
            error = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            native = (error, ws.close_code)
        with pytest.raises(websockets.InvalidStatus) as deepgram:
            await websockets.connect(f"{srv.ws}/v1/listen")
        return native[0], native[1], deepgram.value.response.status_code

    error, code, deepgram_status = asyncio.run(refused())
    assert error["type"] == "error" and error["code"] == "not_ready" and code == 1013
    assert deepgram_status == 503

    gate.set()
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        for _ in range(600):
            ready = http.get("/readyz")
            if ready.status_code == 200:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"].values()) == {"ok"}
    samples = scrape(srv.url)
    assert value(samples, "voxindex_ready") == 1 and value(samples, "voxindex_warmup_seconds") > 0
    assert value(samples, "voxindex_streams_refused_total", code="not_ready") == 2
    _, messages = asyncio.run(speak(f"{srv.ws}/v1/stream", np.concatenate([GAP, synth(PROSE[4]), GAP]), 4))
    assert any(m["type"] == "final" for m in messages)  # and now it serves


def test_a_cold_server_probes_503_while_loading_then_serves_and_logs_json_without_secrets(
    tmp_path: Path, cache_dir: Path, synth: Synth
) -> None:
    secret = "ops-secret-" + "q" * 32
    (tmp_path / "secret").write_text(secret)
    server = ServerProcess(
        tmp_path / "data",
        cache_dir,
        "--jwt-secret-file",
        str(tmp_path / "secret"),
        "--log-format",
        "json",
        ready=False,  # returns as soon as it listens (/healthz)
    )
    try:
        statuses: list[int] = []
        while not statuses or statuses[-1] != 200:
            statuses.append(httpx.get(f"{server.url}/readyz", timeout=10).status_code)
            assert len(statuses) < 30_000 and server.proc.poll() is None
        assert statuses[0] == 503 and set(statuses) == {503, 200}  # loaded and warmed up, then ready

        token = mint_token(secret, "ops-test", "acme", ["transcribe", "search"], 600)
        url = f"{server.ws_url}/v1/stream?access_token={token}"
        stream_id, messages = asyncio.run(speak(url, np.concatenate([GAP, synth(PROSE[4]), GAP]), 4))
        assert any(m["type"] == "final" for m in messages)
    finally:
        server.kill(signal.SIGTERM)

    log = server.log.read_text()
    assert token not in log and secret not in log
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    opened = [r for r in records if r["msg"].startswith("stream opened")]
    assert opened == [{**opened[0], "stream_id": stream_id, "tenant": "acme", "client": "127.0.0.1"}]
    ended = [r for r in records if r["msg"].startswith("stream ended")]
    assert ended and ended[0]["stream_id"] == stream_id and ended[0]["tenant"] == "acme"
    assert any("access_token=[redacted]" in r["msg"] for r in records)  # uvicorn's own line, cleaned
    # a start, a stream and a shutdown are nothing to worry about: no warning, and no library
    # chatter that reads like one ("faiss.loader: Could not load library with AVX512 support")
    assert [r for r in records if r["level"] not in ("debug", "info")] == []
    chatter = ("faiss", "httpx", "sentence_transformers")
    assert [r for r in records if r["logger"].split(".")[0] in chatter] == []


# ---------------- metrics ----------------
def test_metrics_after_streaming_show_sane_engine_latency_and_index_series(
    server: Server, synth: Synth
) -> None:
    before = scrape(server.url)
    audio = np.concatenate([GAP, synth(PROSE[0]), GAP, GAP, synth(PROSE[1]), GAP])
    _, messages = asyncio.run(speak(f"{server.ws}/v1/stream", audio))
    finals = [m for m in messages if m["type"] == "final"]
    assert len(finals) >= 2
    hits = httpx.get(f"{server.url}/v1/search", params={"q": "budget for the new office"}, timeout=30)
    assert hits.status_code == 200
    after = scrape(server.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("voxindex_streams_opened_total", protocol="native") == 1
    assert value(after, "voxindex_active_streams") == 0  # closed again
    assert grew("voxindex_finals_total", reason="endpoint") >= 2
    # engine: batches ran, their time split into encode and decode
    assert grew("voxindex_batch_size_count", kind="live") >= 2
    for phase in ("encode", "decode", "total"):
        assert grew("voxindex_step_seconds_count", phase=phase) >= 2
        assert grew("voxindex_step_seconds_sum", phase=phase) > 0
    assert grew("voxindex_audio_seconds_total", kind="live") == pytest.approx(audio.size / 16000, abs=0.5)
    assert grew("voxindex_model_seconds_total", kind="live") > 0
    assert 0 < value(after, "voxindex_realtime_factor") < 2  # tiny.en keeps up with one stream
    # latency, as a user feels it: end of speech → final, onset → first interim (CPU, tiny.en)
    n = grew("voxindex_end_to_final_seconds_count", reason="endpoint")
    assert n >= 2 and 0.05 < grew("voxindex_end_to_final_seconds_sum", reason="endpoint") / n < 5
    n = grew("voxindex_onset_to_interim_seconds_count")
    # (the first reading is due one step past the audio kept before the onset, 0.8 s, so a
    # first interim can come 0.3-0.5 s after the onset arrived)
    assert n >= 2 and 0.2 < grew("voxindex_onset_to_interim_seconds_sum") / n < 8
    assert grew("voxindex_stream_lag_seconds_count") >= 2
    # the index: segments stored, vectors in, search timed
    assert value(after, "voxindex_index_segments") >= value(before, "voxindex_index_segments") + len(finals)
    assert value(after, "voxindex_index_vectors") >= 1
    assert grew("voxindex_search_seconds_count", mode="hybrid") == 1
    assert value(after, "process_resident_memory_bytes") > 100e6  # the model is in memory
    assert value(after, "voxindex_ready") == 1


def test_refused_streams_are_counted_by_code(server: Server) -> None:
    before = scrape(server.url)

    async def bad() -> None:
        async with websockets.connect(f"{server.ws}/v1/stream?sample_rate=12") as ws:
            assert json.loads(await ws.recv())["code"] == "invalid_request"

    asyncio.run(bad())
    after = scrape(server.url)
    key = ("voxindex_streams_refused_total", (("code", "invalid_request"),))
    assert after[key] - before.get(key, 0.0) == 1


def test_readyz_and_metrics_say_which_device_serves(server: Server) -> None:
    """An operator sees what serves: on this machine the CPU by its model name; on a GPU its
    name and how full it is (the needs_cuda test below)."""
    from voxindex.device import cpu_name

    ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
    device = ready["device"]
    expected = "cuda" if server.app.state.services.model.device.type == "cuda" else "cpu"
    assert device["type"] == expected
    samples = scrape(server.url)
    labels = (("name", device["name"]), ("type", device["type"]))
    assert samples.get(("voxindex_device_info", labels)) == 1
    if expected == "cpu":
        assert device == {"type": "cpu", "name": cpu_name()} and device["name"]


@pytest.mark.needs_cuda
def test_on_a_gpu_readyz_and_metrics_report_its_memory_and_utilisation() -> None:
    import torch

    from voxindex.device import DeviceProbe

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    probe = DeviceProbe(torch.device("cuda"))
    facts = probe.facts()
    held = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB more in use
    after = probe.facts()
    del held
    assert facts["type"] == "cuda" and facts["name"] == torch.cuda.get_device_name(0)
    assert 0 < int(facts["memory_used_bytes"]) < int(facts["memory_total_bytes"])  # type: ignore[call-overload]
    assert int(after["memory_used_bytes"]) >= int(facts["memory_used_bytes"]) + 200 * 2**20  # type: ignore[call-overload]
    assert facts["utilization"] is None or 0.0 <= float(facts["utilization"]) <= 1.0  # type: ignore[arg-type]

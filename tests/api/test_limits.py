"""Every limit of docs/limits.md, on a real server: refused with its documented code, per tenant
or per IP as documented, and lifted again once its window has passed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.api.conftest import Server, frames_of, pcm16, start_server
from tests.conftest import PROSE, Synth, corpus_wer
from voxindex.api.auth import mint_token
from voxindex.api.limits import BodySizeLimit
from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel

SECRET = "limits-secret-" + "y" * 32
GAP = np.zeros(12800, dtype=np.float32)


def bearer(tenant: str, scope: str = "transcribe search") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, 'u-' + tenant, tenant, scope.split(), 600)}"}


StartServer = Callable[..., Server]


@pytest.fixture
def limited(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Start a server with the given limits (JWT auth on); stopped after the test."""
    running: list[Any] = []

    def start(**limits: Any) -> Server:
        settings = Settings(jwt_secret=SECRET, cache_dir=tmp_path_factory.mktemp("limits"), **limits)
        srv, uv, thread = start_server(settings, tiny)
        running.append((uv, thread))
        return srv

    yield start
    for uv, thread in running:
        uv.should_exit = True
        thread.join(timeout=30)


@asynccontextmanager
async def connect(srv: Server, headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
    async with websockets.connect(f"{srv.ws}/v1/stream", additional_headers=headers or {}) as ws:
        yield ws


async def first_message(
    srv: Server, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], int | None]:
    """The first message of a handshake, and the close code if the server then closed."""
    async with connect(srv, headers) as ws:
        message = json.loads(await ws.recv())
        if message["type"] == "ready":
            return message, None
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
        return message, ws.close_code


async def read_all(ws: Any) -> list[dict[str, Any]]:
    messages = []
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            messages.append(json.loads(await ws.recv()))
    return messages


# ---------------- REST ----------------
def test_rest_requests_are_limited_per_tenant_and_reset(limited: StartServer) -> None:
    srv = limited(rest_rate_per_tenant="4/2 seconds", rest_rate_per_ip="1000/minute")
    acme, globex = bearer("acme"), bearer("globex")
    with httpx.Client(base_url=srv.url) as client:
        assert [client.get("/v1/streams", headers=acme).status_code for _ in range(4)] == [200] * 4
        refused = client.get("/v1/streams", headers=acme)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert client.get("/v1/search", params={"q": "x"}, headers=acme).status_code == 429  # all routes
        assert client.get("/v1/streams", headers=globex).status_code == 200  # another tenant is untouched
        assert all(client.get("/health").status_code == 200 for _ in range(10))  # probes are exempt
        time.sleep(2.2)
        assert client.get("/v1/streams", headers=acme).status_code == 200


def test_rest_requests_are_limited_per_ip_whatever_the_credential(limited: StartServer) -> None:
    srv = limited(rest_rate_per_ip="6/2 seconds", rest_rate_per_tenant="1000/minute")
    with httpx.Client(base_url=srv.url) as client:
        codes = [client.get("/v1/streams", headers=bearer(f"t{i}")).status_code for i in range(6)]
        assert codes == [200] * 6
        assert client.get("/v1/streams", headers=bearer("fresh")).status_code == 429
        assert client.get("/v1/streams").json()["error"]["code"] == "rate_limited"  # before auth: no 401
        time.sleep(2.2)
        assert client.get("/v1/streams", headers=bearer("fresh")).status_code == 200


def test_request_bodies_over_the_limit_get_413(limited: StartServer) -> None:
    srv = limited(max_body_bytes=1000)
    with httpx.Client(base_url=srv.url) as client:
        declared = client.post("/v1/streams", content=b"x" * 5000, headers=bearer("acme"))
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"

        assert client.post("/v1/streams", content=b"x" * 10, headers=bearer("acme")).status_code == 405


def test_bodies_without_a_length_are_counted_as_they_arrive() -> None:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    app = BodySizeLimit(Starlette(routes=[Route("/up", echo, methods=["POST"])]), max_bytes=1000)
    with TestClient(app) as client:

        def chunks(n: int) -> Iterator[bytes]:  # chunked transfer: no Content-Length
            yield from (b"x" * 100 for _ in range(n))

        assert client.post("/up", content=chunks(10)).text == "1000"
        refused = client.post("/up", content=chunks(11))
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "payload_too_large"


# ---------------- WebSocket handshakes ----------------
async def test_connects_are_limited_per_tenant_and_reset(limited: StartServer) -> None:
    srv = limited(ws_connects_per_tenant="3/2 seconds")
    for _ in range(3):
        assert (await first_message(srv, bearer("acme")))[0]["type"] == "ready"
    message, code = await first_message(srv, bearer("acme"))
    assert (message["code"], code) == ("rate_limited", 4429)
    assert "retry in" in message["message"]
    assert (await first_message(srv, bearer("globex")))[0]["type"] == "ready"
    await asyncio.sleep(2.2)
    assert (await first_message(srv, bearer("acme")))[0]["type"] == "ready"


async def test_concurrent_streams_are_limited_per_tenant(limited: StartServer) -> None:
    srv = limited(max_streams_per_tenant=2)
    async with connect(srv, bearer("acme")) as one, connect(srv, bearer("acme")) as two:
        assert json.loads(await one.recv())["type"] == json.loads(await two.recv())["type"] == "ready"
        message, code = await first_message(srv, bearer("acme"))
        assert (message["code"], code) == ("quota_exceeded", 4429)
        assert "2 concurrent streams" in message["message"]
        assert (await first_message(srv, bearer("globex")))[0]["type"] == "ready"
        await one.send(json.dumps({"type": "close"}))
        assert (await read_all(one))[-1]["type"] == "closed"
        for _ in range(50):  # the engine releases the stream once it is finished
            message, _ = await first_message(srv, bearer("acme"))
            if message["type"] == "ready":
                break
            await asyncio.sleep(0.1)
        assert message["type"] == "ready"


async def test_browser_origins_must_be_on_the_allowlist(limited: StartServer) -> None:
    srv = limited(allowed_origins="https://app.example.com, https://admin.example.com")
    token = mint_token(SECRET, "u", "acme", ["transcribe"], 600)
    url = f"{srv.ws}/v1/stream?access_token={token}"
    async with websockets.connect(url, origin="https://evil.example.net") as ws:
        message = json.loads(await ws.recv())
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
    assert (message["code"], ws.close_code) == ("forbidden", 4403)
    assert "origin" in message["message"]
    async with websockets.connect(url, origin="https://app.example.com") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
    async with websockets.connect(url) as ws:  # not a browser: no Origin header
        assert json.loads(await ws.recv())["type"] == "ready"


# ---------------- during a stream ----------------
async def test_idle_streams_are_finalized_then_closed_with_4408(limited: StartServer, synth: Synth) -> None:
    srv = limited(idle_timeout_s=1.5)
    async with connect(srv, bearer("acme")) as ws:
        await ws.recv()
        for frame in frames_of(pcm16(synth(PROSE[4]))):  # speech, then nothing at all
            await ws.send(frame)
        messages = await read_all(ws)
    assert ws.close_code == 4408
    assert [m["code"] for m in messages if m["type"] == "error"] == ["idle_timeout"]
    finals = " ".join(m["text"] for m in messages if m["type"] == "final")
    assert corpus_wer([(PROSE[4], finals)]) <= 0.15  # what was said is kept
    assert messages[-1]["type"] == "closed"


async def test_keepalives_hold_an_idle_stream_open(limited: StartServer) -> None:
    srv = limited(idle_timeout_s=1.0)
    async with connect(srv, bearer("acme")) as ws:
        await ws.recv()
        for _ in range(6):  # 3 s with no audio, a keepalive every 0.5 s
            await ws.send(json.dumps({"type": "keepalive"}))
            await asyncio.sleep(0.5)
        await ws.send(json.dumps({"type": "close"}))
        messages = await read_all(ws)
    assert ws.close_code == 1000 and [m["type"] for m in messages] == ["closed"]


async def test_streams_longer_than_the_limit_end_with_4429(limited: StartServer, synth: Synth) -> None:
    srv = limited(max_stream_s=4.0)
    audio = np.concatenate([synth(PROSE[5]), GAP, synth(PROSE[6]), GAP])  # about 10 s
    async with connect(srv, bearer("acme")) as ws:
        await ws.recv()
        with contextlib.suppress(websockets.ConnectionClosed):
            for frame in frames_of(pcm16(audio), 3200):
                await ws.send(frame)
                await asyncio.sleep(0.05)  # 2x real time
        messages = await read_all(ws)
    assert ws.close_code == 4429
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["quota_exceeded"] and "4 s" in errors[0]["message"]
    closed = messages[-1]
    assert closed["type"] == "closed" and 4.0 <= closed["duration"] <= 4.5
    assert any(m["type"] == "final" for m in messages)  # the first 4 s were finalized


# ---------------- abuse ----------------
async def test_a_flooding_client_is_throttled_and_harms_no_one(limited: StartServer, synth: Synth) -> None:
    srv = limited(max_queue_s=5.0, max_audio_speed=3.0)
    flood_audio = pcm16(np.tile(synth(PROSE[7]), 40))  # minutes of audio, sent as fast as possible
    flooding = asyncio.Event()

    async def flood() -> None:
        async with connect(srv, bearer("flood")) as ws:
            await ws.recv()
            flooding.set()
            with contextlib.suppress(websockets.ConnectionClosed):
                for frame in frames_of(flood_audio, 64_000):
                    await ws.send(frame)

    async def speak(text: str) -> str:
        await flooding.wait()
        async with connect(srv, bearer("polite")) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"  # admitted despite the flood
            for frame in frames_of(pcm16(np.concatenate([GAP, synth(text), GAP])), 3200):
                await ws.send(frame)
                await asyncio.sleep(0.1)  # real time
            await ws.send(json.dumps({"type": "close"}))
            messages = await read_all(ws)
        assert ws.close_code == 1000
        return " ".join(m["text"] for m in messages if m["type"] == "final")

    overshoot: list[float] = []
    held: list[float] = []

    async def watch() -> None:
        """What the server accepted from the flood against what its pace allows."""
        await flooding.wait()
        while True:
            for s in list(srv.app.state.services.scheduler.streams.values()):
                if s.tenant == "flood":
                    allowed = 5.0 + 3.0 * (time.monotonic() - s.opened_at)
                    overshoot.append(s.now + s.inbox_seconds - allowed)
                    held.append(s.utterance.audio.size / 16000 + s.inbox_seconds)
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(flood()), asyncio.create_task(watch())]
    heard = await asyncio.gather(speak(PROSE[8]), speak(PROSE[11]))
    for task in tasks:
        task.cancel()
    assert corpus_wer([(PROSE[8], heard[0]), (PROSE[11], heard[1])]) <= 0.15
    assert overshoot and max(overshoot) <= 2.5  # at most one 2 s frame past its allowance
    assert max(held) <= 45  # and its memory is bounded: one window, one ingest and the inbox


async def test_a_burst_of_200_connections_leaves_the_server_responsive(
    limited: StartServer, synth: Synth
) -> None:
    srv = limited(ws_connects_per_ip="100/10 seconds", max_streams=8)
    token = mint_token(SECRET, "u", "acme", ["transcribe"], 600)

    async def attempt() -> str:
        try:
            async with websockets.connect(f"{srv.ws}/v1/stream?access_token={token}", open_timeout=30) as ws:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                return "ready" if message["type"] == "ready" else message["code"]
        except (OSError, websockets.InvalidHandshake) as e:
            return f"failed: {e.__class__.__name__}"

    outcomes = await asyncio.gather(*(attempt() for _ in range(200)))
    counts = {kind: outcomes.count(kind) for kind in set(outcomes)}
    assert set(counts) <= {"ready", "over_capacity", "rate_limited"}, counts
    assert counts.get("rate_limited") == 100 and counts.get("ready", 0) >= 8, counts
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{srv.url}/health", timeout=10)
    assert health.status_code == 200
    await asyncio.sleep(10.2)  # the window has passed: a real stream works again
    async with connect(srv, bearer("acme")) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames_of(pcm16(np.concatenate([GAP, synth(PROSE[0]), GAP]))):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "close"}))
        finals = " ".join(m["text"] for m in await read_all(ws) if m["type"] == "final")
    assert corpus_wer([(PROSE[0], finals)]) <= 0.15

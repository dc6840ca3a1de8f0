"""The shipped nginx/ config, run by Debian's nginx, in front of a real voxindex server."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from tests.api.conftest import free_port, pcm16
from tests.conftest import PROSE, KeyedServer, Synth, wer
from tests.deploy.conftest import Nginx, configure, nginx_test, start_nginx

GAP = np.zeros(16000, dtype=np.float32)


def test_the_shipped_config_passes_nginx_t(tmp_path: Path) -> None:
    prefix = tmp_path / "nginx"
    configure(prefix, ["127.0.0.1:9"], free_port(), free_port())
    checked = nginx_test(prefix)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr


@pytest.fixture(scope="module")
def edge(keyed_server: KeyedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    nginx = start_nginx(tmp_path_factory.mktemp("nginx"), [keyed_server.url.removeprefix("http://")])
    yield nginx
    nginx.stop()


def tls(edge: Nginx) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(edge.ca))


def test_real_speech_streams_over_wss_through_nginx_with_the_client_address_forwarded(
    edge: Nginx, keyed_server: KeyedServer, synth: Synth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voxindex.api")
    said = [PROSE[2], PROSE[3]]
    audio = np.concatenate([GAP, synth(said[0]), GAP, synth(said[1]), GAP])

    async def speak() -> tuple[str, list[dict[str, Any]], int | None]:
        messages: list[dict[str, Any]] = []
        async with websockets.connect(
            f"wss://127.0.0.1:{edge.https_port}/v1/stream",
            ssl=tls(edge),
            additional_headers={"Authorization": f"Bearer {keyed_server.api_key}"},
            local_addr=("127.0.0.2", 0),  # nginx itself reaches the server from 127.0.0.1
        ) as ws:
            ready = json.loads(await ws.recv())
            data = pcm16(audio)

            async def read() -> None:
                async for raw in ws:
                    messages.append(json.loads(raw))

            reader = asyncio.create_task(read())
            for i in range(0, len(data), 6400):  # 200 ms frames in real time
                await ws.send(data[i : i + 6400])
                await asyncio.sleep(0.2)
            await ws.send(json.dumps({"type": "close"}))
            await asyncio.wait_for(reader, 60)
        return str(ready["stream_id"]), messages, ws.close_code

    stream_id, messages, code = asyncio.run(speak())
    finals = [m["text"] for m in messages if m["type"] == "final"]
    assert code == 1000 and messages[-1]["type"] == "closed"
    assert any(m["type"] == "interim" for m in messages)  # interims are not held back by the proxy
    assert wer(" ".join(said), " ".join(finals)) <= 0.2, finals
    opened = [r for r in caplog.records if r.getMessage().startswith("stream opened")]
    assert [getattr(r, "client", None) for r in opened if getattr(r, "stream_id", "") == stream_id] == [
        "127.0.0.2"
    ]

    with httpx.Client(base_url=f"https://127.0.0.1:{edge.https_port}", verify=tls(edge), timeout=30) as http:
        hits = http.get(
            "/v1/search",
            params={"q": "marketing campaign", "mode": "keyword", "stream_id": stream_id},
            headers={"Authorization": f"Bearer {keyed_server.api_key}"},
        )
        assert hits.status_code == 200 and hits.json()["hits"], hits.text
        assert "max-age" in hits.headers["strict-transport-security"]


def test_the_edge_redirects_http_hides_metrics_and_limits_bodies(edge: Nginx) -> None:
    plain = httpx.get(f"http://127.0.0.1:{edge.http_port}/v1/search?q=x", timeout=10)
    assert plain.status_code == 308 and plain.headers["location"].startswith("https://")
    with httpx.Client(base_url=f"https://127.0.0.1:{edge.https_port}", verify=tls(edge), timeout=30) as http:
        assert http.get("/readyz").status_code == 200  # probes pass through
        assert http.get("/metrics").status_code == 404  # Prometheus scrapes replicas directly
        assert http.post("/v1/search", content=b"x" * 2_000_000).status_code == 413


def test_the_edge_rate_limits_handshake_floods(edge: Nginx) -> None:
    async def flood() -> list[int]:
        async with httpx.AsyncClient(verify=tls(edge), timeout=30) as http:
            url = f"https://127.0.0.1:{edge.https_port}/v1/stream"
            responses = await asyncio.gather(*(http.get(url) for _ in range(60)))
            return [r.status_code for r in responses]

    statuses = asyncio.run(flood())
    assert statuses.count(429) >= 30  # burst 20 at 5/s: most of a 60-handshake burst stops at nginx
    assert "limiting requests" in edge.log()


def test_every_streaming_protocol_and_streamed_transcriptions_pass_the_edge(
    edge: Nginx, keyed_server: KeyedServer
) -> None:
    """Flux's /v2/listen and OpenAI Realtime's /v1/realtime upgrade through the edge as /v1/stream
    does, and stream=true transcriptions come back as events, not held back."""
    bearer = {"Authorization": f"Bearer {keyed_server.api_key}"}
    wss = f"wss://127.0.0.1:{edge.https_port}"

    async def first_message(path: str) -> dict[str, Any]:
        # from an address of its own: the flood test leaves 127.0.0.1's handshake budget spent
        address = ("127.0.0.4", 0)
        async with websockets.connect(
            f"{wss}{path}", ssl=tls(edge), additional_headers=bearer, local_addr=address
        ) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 30))  # type: ignore[no-any-return]

    flux = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000"
    assert asyncio.run(first_message(flux))["type"] == "Connected"
    assert asyncio.run(first_message("/v1/realtime?intent=transcription"))["type"] == "session.created"
    wav = Path(__file__).parents[1] / "fixtures" / "goforward.wav"
    from_own_address = httpx.HTTPTransport(verify=tls(edge), local_address="127.0.0.4")
    with httpx.Client(
        base_url=f"https://127.0.0.1:{edge.https_port}", transport=from_own_address, timeout=60
    ) as http:
        files = {"file": ("goforward.wav", wav.read_bytes(), "audio/wav")}
        with http.stream(
            "POST", "/v1/audio/transcriptions", headers=bearer, files=files, data={"stream": "true"}
        ) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    *deltas, done = events
    assert done["type"] == "transcript.text.done" and "".join(d["delta"] for d in deltas) == done["text"]
    assert "forward" in done["text"].lower()

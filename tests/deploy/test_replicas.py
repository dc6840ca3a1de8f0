"""Two voxindex replicas behind Debian's nginx, sharing one Milvus (a real ``milvus-lite
server``): streams on either are searchable from both, and a replica killed mid-stream loses no
final it sent while its client carries on through the other."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import voxindex_client as vx
import websockets

from tests.api.conftest import ServerProcess, pcm16
from tests.conftest import PROSE, MilvusLite, Synth, corpus_wer
from tests.deploy.conftest import Nginx, start_nginx

GAP = np.zeros(16000, dtype=np.float32)


@dataclass
class Cluster:
    replicas: dict[str, ServerProcess]  # by replica id
    nginx: Nginx


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, milvus: MilvusLite
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    store = milvus.collection("replicas")
    replicas = {
        name: ServerProcess(
            root / name / "data", cache_dir, "--no-auth", "--store", store, "--replica-id", name
        )
        for name in ("a", "b")
    }
    nginx = start_nginx(root / "nginx", [f"127.0.0.1:{r.port}" for r in replicas.values()])
    yield Cluster(replicas, nginx)
    nginx.stop()
    for replica in replicas.values():
        if replica.proc.poll() is None:
            replica.kill(signal.SIGTERM)


async def speak(url: str, audio: np.ndarray) -> tuple[str, list[str]]:
    """Stream ``audio`` (4x real time) to one replica directly; (stream id, finals)."""
    finals: list[str] = []
    async with websockets.connect(url) as ws:
        stream_id = str(json.loads(await ws.recv())["stream_id"])
        data = pcm16(audio)
        for i in range(0, len(data), 6400):
            await ws.send(data[i : i + 6400])
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "close"}))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "final":
                finals.append(message["text"])
    return stream_id, finals


def search(replica: ServerProcess, q: str, stream_id: str) -> list[str]:
    r = httpx.get(
        f"{replica.url}/v1/search", params={"q": q, "mode": "keyword", "stream_id": stream_id}, timeout=30
    )
    assert r.status_code == 200, r.text
    return [h["text"] for h in r.json()["hits"]]


def test_streams_on_either_replica_are_searchable_from_both(cluster: Cluster, synth: Synth) -> None:
    a, b = cluster.replicas["a"], cluster.replicas["b"]
    on_a, finals_a = asyncio.run(speak(f"{a.ws_url}/v1/stream", np.concatenate([GAP, synth(PROSE[8]), GAP])))
    on_b, finals_b = asyncio.run(speak(f"{b.ws_url}/v1/stream", np.concatenate([GAP, synth(PROSE[9]), GAP])))
    assert on_a.startswith("a-") and on_b.startswith("b-")  # replica identity in stream ids
    assert finals_a and finals_b
    for replica in (a, b):
        assert search(replica, "train airport station", on_a) == finals_a
        assert search(replica, "version application testing", on_b) == finals_b
        listed = httpx.get(f"{replica.url}/v1/streams", timeout=30).json()["streams"]
        assert {on_a, on_b} <= {s["id"] for s in listed}


def test_a_killed_replica_loses_no_final_it_sent_and_its_client_finishes_on_the_other(
    cluster: Cluster, synth: Synth
) -> None:
    first = np.concatenate([GAP, synth(PROSE[10]), GAP])
    second = np.concatenate([GAP, synth(PROSE[11]), GAP])
    tls = ssl.create_default_context(cafile=str(cluster.nginx.ca))
    events: list[vx.Event] = []
    killed: list[str] = []

    async def client() -> None:
        url = f"wss://127.0.0.1:{cluster.nginx.https_port}"
        async with vx.connect(url, ssl=tls, retry_interval_s=0.5, max_retries=20) as session:

            async def consume() -> None:
                async for event in session:
                    events.append(event)

            reader = asyncio.create_task(consume())
            data = pcm16(first)
            for i in range(0, len(data), 3200):
                await session.send(data[i : i + 3200])
                await asyncio.sleep(0.025)
            while not any(isinstance(e, vx.Final) for e in events):
                await asyncio.sleep(0.1)
            serving = next(e.stream_id for e in events if isinstance(e, vx.Ready)).split("-")[0]
            killed.append(serving)
            cluster.replicas[serving].kill(signal.SIGKILL)  # no shutdown hook runs
            data = pcm16(second)
            for i in range(0, len(data), 3200):
                await session.send(data[i : i + 3200])
                await asyncio.sleep(0.025)
            await session.close()
            await asyncio.wait_for(reader, 90)

    asyncio.run(client())
    dead = killed[0]
    survivor = cluster.replicas["b" if dead == "a" else "a"]
    ready = [e for e in events if isinstance(e, vx.Ready)]
    reconnected = [e for e in events if isinstance(e, vx.Reconnected)]
    assert [r.stream_id.split("-")[0] for r in ready] == [dead, "b" if dead == "a" else "a"]
    # times go on from all the audio sent on the first connection, including what the dead
    # replica received after it was killed but before the client noticed (that audio is lost)
    assert len(reconnected) == 1 and first.size / 16000 <= reconnected[0].offset < first.size / 16000 + 1.5
    finals = [e for e in events if isinstance(e, vx.Final)]
    before = [f.text for f in finals if f.stream_id == ready[0].stream_id]
    after = [f for f in finals if f.stream_id == ready[1].stream_id]
    assert before and after and all(f.start >= reconnected[0].offset for f in after)  # times go on
    assert corpus_wer([(f"{PROSE[10]} {PROSE[11]}", " ".join(f.text for f in finals))]) <= 0.2
    # every final the dead replica sent is in the shared store, readable from the survivor
    stored = httpx.get(f"{survivor.url}/v1/streams/{ready[0].stream_id}/transcript", timeout=30).json()
    assert [s["text"] for s in stored["segments"]][: len(before)] == before
    assert search(survivor, "sales northern region", ready[0].stream_id)

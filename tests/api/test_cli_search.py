"""`voxindex search` against a running server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np

from tests.api.conftest import Server, stream_audio
from tests.test_cli import run
from voxindex.audio import decode_file

FIXTURES = Path(__file__).parents[1] / "fixtures"
GAP = np.zeros(8000, np.float32)


def test_search_against_a_running_server(server: Server, cache_dir: Path) -> None:
    audio = np.concatenate([GAP, decode_file(FIXTURES / "goforward.wav"), GAP])
    session = asyncio.run(stream_audio(server.ws, audio, speed=3.0))
    sid = str(session.of("ready")[0]["stream_id"])
    deadline = time.monotonic() + 30
    params = {"q": "x", "mode": "vector", "min_score": 0, "stream_id": sid}
    while not httpx.get(f"{server.url}/v1/search", params=params, timeout=30).json()["hits"]:
        assert time.monotonic() < deadline, "never embedded"
        time.sleep(0.05)

    def search(*args: str) -> tuple[str, list[str], str]:
        proc = run("search", *args, "--url", server.url, "--stream-id", sid, cache=cache_dir)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()[0], proc.stdout.splitlines()[1:], proc.stderr

    header, rows, err = search("go forward ten meters")
    assert err == "" and header.split()[:2] == ["score", "source"]  # no "HTTP Request" log line above
    assert len(rows) == 1 and "forward" in rows[0].lower() and float(rows[0].split()[0]) > 0.9, rows
    header, rows, err = search("who won the football match")
    assert err == "" and header.startswith("nothing found") and rows == []
    header, rows, err = search("who won the football match", "--min-score", "0")
    assert rows and all(0.0 <= float(r.split()[0]) < 0.5 for r in rows), rows

    bad = run("search", "", "--url", server.url, cache=cache_dir)
    assert bad.returncode == 2 and "error: invalid_request: q must not be empty" in bad.stderr
    down = run("search", "x", "--url", "http://127.0.0.1:9", cache=cache_dir)
    assert down.returncode == 1 and "unreachable" in down.stderr and "Traceback" not in down.stderr

"""`voxindex search` against a running server."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Server
from tests.test_cli import run


def test_search_against_a_running_server(server: Server, cache_dir: Path) -> None:
    proc = run("search", "anything", "--url", server.url, "-k", "3", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    bad = run("search", "", "--url", server.url, cache=cache_dir)
    assert bad.returncode == 2 and "error: invalid_request: q must not be empty" in bad.stderr
    down = run("search", "x", "--url", "http://127.0.0.1:9", cache=cache_dir)
    assert down.returncode == 1 and "unreachable" in down.stderr and "Traceback" not in down.stderr

"""The README's first snippet, exactly as written, against the server `make serve` starts.

A newcomer runs `make serve` at the repository's root (``voxindex serve --dev`` on 127.0.0.1:8080
with its data in ``./data``), then pastes the "Use it" snippet into a second terminal there. The
test does the same in a directory laid out like the checkout (its ``.venv`` and ``server``
linked), so the snippet's relative paths and its token (signed with ``data/dev-jwt-secret``)
mean what they mean for the user, without writing into the checkout itself.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import wer

ROOT = Path(__file__).resolve().parents[1]
PORT = 8080  # the README's address: the snippet names it


def snippet() -> str:
    """The shell block of the README's "Use it" section that streams the shipped recording."""
    section = ROOT.joinpath("README.md").read_text().split("## Use it", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    found = [b for b in blocks if "voxindex token" in b and "websockets" in b]
    assert len(found) == 1, "the README's streaming snippet moved: update this test with it"
    return found[0]


def test_the_readme_snippet_prints_a_final_for_the_shipped_recording(tmp_path: Path, cache_dir: Path) -> None:
    assert (ROOT / ".venv" / "bin" / "python").exists(), "the snippet runs .venv/bin/python: run make test"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.fail(f"port {PORT} is taken: the README's snippet talks to 127.0.0.1:{PORT}")
    for name in (".venv", "server"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "VOXINDEX_CACHE_DIR": str(cache_dir)}
    env.pop("VOXINDEX_DATA_DIR", None)
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [".venv/bin/voxindex", "serve", "--dev"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        import httpx

        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.1)
        ran = subprocess.run(
            ["bash", "-c", snippet()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert ran.returncode == 0, ran.stderr
    messages = [json.loads(line) for line in ran.stdout.splitlines()]
    assert messages[0]["type"] == "ready" and messages[-1]["type"] == "closed", ran.stdout
    finals = [m for m in messages if m["type"] == "final"]
    assert finals and wer("go forward ten meters", " ".join(f["text"] for f in finals)) <= 0.25, finals


def test_the_layout_names_every_module_and_folder_of_the_package() -> None:
    """The README's map of the house: someone new finds where a behaviour lives from it."""
    package = ROOT / "server" / "voxindex"
    layout = ROOT.joinpath("README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    modules = [p for p in package.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts]
    folders = [p for p in package.rglob("*") if p.is_dir() and "__pycache__" not in p.parts]
    unnamed = [p.name for p in modules if p.name not in layout]
    unnamed += [f"{p.name}/" for p in folders if f"{p.name}/" not in layout]
    assert unnamed == [], f"README's Layout does not name {unnamed}"

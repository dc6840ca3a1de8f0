"""Logging set up once for a process (voxindex/logs.py): where its lines go and what they leave out."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from voxindex.logs import setup_logging


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_a_line_logged_after_stderr_was_swapped_and_closed_goes_to_the_new_stderr(
    restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a test harness does to a server thread: stderr captured at set-up, then closed; the
    thread's next line must reach stderr as it is now, not print "--- Logging error ---"."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("info")
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    thread = threading.Thread(
        target=lambda: logging.getLogger("voxindex.api").info("stream ended after %.1f s of audio", 2.5)
    )
    thread.start()
    thread.join()
    assert "stream ended after 2.5 s of audio" in now.getvalue()
    assert "Logging error" not in now.getvalue()


def test_libraries_whose_info_reads_like_failure_say_only_warnings(
    restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    setup_logging("info")
    logging.getLogger("faiss.loader").info("Could not load library with AVX512 support due to: ...")
    logging.getLogger("httpx").info('HTTP Request: GET http://127.0.0.1:8080/v1/search "HTTP/1.1 200 OK"')
    logging.getLogger("voxindex.serve").info("voxindex serving tiny.en on cpu")
    logging.getLogger("faiss.loader").warning("a real problem")
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 3)[-1] for line in lines] == [
        "voxindex.serve: voxindex serving tiny.en on cpu",
        "faiss.loader: a real problem",
    ], lines

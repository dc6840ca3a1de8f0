"""``voxindex stream``: finals with times, progress, and Ctrl-C closing the stream cleanly."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.api.conftest import write_wav
from tests.conftest import PROSE, KeyedServer, Synth, corpus_wer

FINAL = re.compile(r"^\[(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\] (.+)$")
GAP = np.zeros(16000, np.float32)


def voxindex(*args: str) -> list[str]:
    return [sys.executable, "-m", "voxindex.cli", *args]


def test_stream_prints_finals_with_times_and_nothing_else_when_piped(
    keyed_server: KeyedServer, synth: Synth, tmp_path: Path
) -> None:
    audio = np.concatenate([GAP, synth(PROSE[6]), GAP, synth(PROSE[7]), GAP])
    path = write_wav(tmp_path / "talk.wav", audio)
    run = subprocess.run(
        voxindex("stream", str(path), "--url", keyed_server.url, "--token", keyed_server.api_key, "--fast"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [FINAL.match(line) for line in run.stdout.splitlines()]
    assert lines and all(lines), run.stdout
    assert corpus_wer([(f"{PROSE[6]} {PROSE[7]}", " ".join(m.group(3) for m in lines if m))]) <= 0.15
    assert run.stderr == ""  # a script's log gets the finals: no progress lines, no log lines


def test_with_stdout_piped_the_progress_bar_moves_in_place_on_a_terminal_stderr(
    keyed_server: KeyedServer, synth: Synth, tmp_path: Path
) -> None:
    """``voxindex stream talk.wav > out.txt`` on a terminal: the bar on stderr, redrawn in place."""
    path = write_wav(tmp_path / "talk.wav", np.concatenate([GAP, synth(PROSE[6]), GAP]))
    main, terminal = os.openpty()
    with open(main, "rb", buffering=0) as screen:
        args = ("stream", str(path), "--url", keyed_server.url, "--token", keyed_server.api_key, "--fast")
        run = subprocess.run(
            voxindex(*args),
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=120,
        )
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO: everything written was read
            while chunk := screen.read(65536):
                shown += chunk
    assert run.returncode == 0 and FINAL.match(run.stdout.decode().splitlines()[0]), run.stdout
    bars = re.findall(rb"\r\x1b\[K\[[#.]{20}\] +(\d+)%", shown)
    shares = [int(b) for b in bars]
    assert len(shares) >= 2 and shares == sorted(shares) and shares[-1] == 100, shown[-300:]


def test_ctrl_c_closes_the_stream_and_still_prints_its_finals(
    keyed_server: KeyedServer, synth: Synth, tmp_path: Path
) -> None:
    audio = np.concatenate([GAP, synth(PROSE[8]), GAP] + [synth(PROSE[9]), GAP] * 3)
    path = write_wav(tmp_path / "long.wav", audio)
    proc = subprocess.Popen(
        voxindex("stream", str(path), "--url", keyed_server.url, "--token", keyed_server.api_key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # real-time pacing: the first sentence's final
    assert FINAL.match(first), first
    time.sleep(2.0)  # well into the next sentence
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    later = [FINAL.match(line) for line in rest.splitlines() if line.strip()]
    assert later and all(later), rest  # the sentence cut by Ctrl-C was finalized and printed
    assert corpus_wer([(PROSE[8], FINAL.match(first).group(3))]) <= 0.15  # type: ignore[union-attr]

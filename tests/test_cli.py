"""The command line as a user runs it: a real subprocess, real files, exit codes and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, wer


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOXINDEX_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "voxindex.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_transcribe_json(cache_dir: Path) -> None:
    proc = run("transcribe", "--json", "--words", str(FIXTURES / "goforward.wav"), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the answer alone: no log line (compute type, libraries) around it
    result = json.loads(proc.stdout)
    assert set(result) >= {"text", "segments", "duration", "model"}
    assert result["model"] == "tiny.en"
    assert wer("go forward ten meters", result["text"]) <= 0.25
    assert result["duration"] == pytest.approx(2.79, abs=0.01)
    seg = result["segments"][0]
    assert 0 <= seg["start"] < seg["end"] <= result["duration"]
    assert next(w["word"] for w in seg["words"]).lower() == "go"


def test_transcribe_plain_prints_timestamped_segments(cache_dir: Path) -> None:
    proc = run(
        "transcribe", str(FIXTURES / "cards-001.wav"), str(FIXTURES / "cards-003.wav"), cache=cache_dir
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("cards-001.wav") and lines[0].startswith("==")
    assert lines[1].startswith("[00:00:00.000 --> 00:00:0")
    assert "clubs" in proc.stdout.lower() or "club" in proc.stdout.lower()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.wav"), "no such file"),
        (lambda d: _write(d / "empty.wav", b""), "empty"),
        (lambda d: _write(d / "zero.wav", (FIXTURES / "cards-001.wav").read_bytes()[:44]), "truncated"),
        (lambda d: _write(d / "text.mp3", b"hello, I am not audio\n" * 50), "not a readable audio file"),
        (lambda d: _write(d / "cut.wav", (FIXTURES / "cards-005.wav").read_bytes()[:20000]), "truncated"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, cache_dir: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    proc = run("transcribe", make(tmp_path), cache=cache_dir)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: bad_audio:")
    assert message in proc.stderr


def test_unknown_model_is_a_clear_error(cache_dir: Path) -> None:
    proc = run("transcribe", "--model", "whisper-huge-9", str(FIXTURES / "cards-001.wav"), cache=cache_dir)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: unknown_model:" in proc.stderr and "tiny.en" in proc.stderr


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_keys_and_tokens(tmp_path: Path) -> None:
    import jwt

    data = str(tmp_path / "data")
    created = run(
        "keys", "--data-dir", data, "create", "--tenant", "acme", "--scope", "search", cache=tmp_path
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("vxk_") and "shown once" in created.stderr
    key_id = key.split("_")[1]
    listed = run("keys", "--data-dir", data, "list", cache=tmp_path)
    assert f"{key_id}\tacme\tsearch\tactive" in listed.stdout
    assert key not in listed.stdout and key.split("_", 2)[2] not in (
        tmp_path / "data" / "keys.sqlite3"
    ).read_bytes().decode("latin-1")
    assert run("keys", "--data-dir", data, "revoke", key_id, cache=tmp_path).returncode == 0
    assert "revoked" in run("keys", "--data-dir", data, "list", cache=tmp_path).stdout
    again = run("keys", "--data-dir", data, "revoke", key_id, cache=tmp_path)
    assert again.returncode == 2 and "not_found" in again.stderr
    bad_scope = run("keys", "--data-dir", data, "create", "--tenant", "a", "--scope", "root", cache=tmp_path)
    assert bad_scope.returncode == 2 and "scopes must be" in bad_scope.stderr

    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    token = run(
        "token",
        "--sub",
        "svc",
        "--tenant",
        "acme",
        "--scope",
        "transcribe,search",
        "--ttl",
        "2h",
        "--jwt-secret-file",
        str(secret),
        cache=tmp_path,
    )
    assert token.returncode == 0, token.stderr
    claims = jwt.decode(token.stdout.strip(), "s" * 40, algorithms=["HS256"])
    assert claims["tenant"] == "acme" and claims["scope"] == "transcribe search"
    assert 7100 <= claims["exp"] - claims["iat"] <= 7200
    no_secret = run("token", "--sub", "x", "--data-dir", str(tmp_path / "none"), cache=tmp_path)
    assert no_secret.returncode == 2 and "no HS256 secret" in no_secret.stderr

"""``voxindex index FILE...``: upload recordings to a server and follow them until indexed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
BAR = 30


def index_files(
    url: str,
    token: str | None,
    files: list[Path],
    *,
    wait: bool = True,
    as_json: bool = False,
    err: TextIO = sys.stderr,
) -> int:
    """Upload each file, then show progress until every one is indexed or failed.

    Exit status: 0 all indexed (or queued, without ``wait``), 1 some failed or the server is
    unreachable, 2 a file was refused at upload (not media, too large, bad credential).
    """
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    accepted: list[tuple[Path, dict[str, Any]]] = []
    status = 0
    with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(30, read=600)) as client:
        for path in files:
            if not path.is_file():
                print(f"error: bad_audio: {path}: no such file", file=err)
                status = EXIT_BAD_INPUT
                continue
            try:
                with path.open("rb") as f:
                    response = client.post("/v1/recordings", files={"file": (path.name, f)})
            except httpx.HTTPError as e:
                print(f"error: unreachable: {url}: {e}", file=err)
                return EXIT_FAILURE
            body = response.json()
            if response.status_code != 202:
                error = body.get("error", {}) if isinstance(body, dict) else {}
                print(
                    f"error: {error.get('code', response.status_code)}: {error.get('message', body)}",
                    file=err,
                )
                status = max(status, EXIT_BAD_INPUT if response.status_code < 500 else EXIT_FAILURE)
                continue
            accepted.append((path, body))
        for path, record in accepted:
            final = _follow(client, path, record, err) if wait else record
            if as_json:
                print(json.dumps(final))
            else:
                print(_summary(path, final))
            if final["status"] == "failed":
                status = max(status, EXIT_FAILURE)
    return status


def _follow(client: httpx.Client, path: Path, record: dict[str, Any], err: TextIO) -> dict[str, Any]:
    while record["status"] not in ("indexed", "failed"):
        _bar(path, record, err)
        time.sleep(0.5)
        record = client.get(f"/v1/recordings/{record['id']}").json()
    _bar(path, record, err)
    print(file=err)
    return record


def _bar(path: Path, record: dict[str, Any], err: TextIO) -> None:
    done = int(record["progress"] * BAR)
    seconds = (
        f"{record['done_s']:.0f}/{record['duration']:.0f} s" if record.get("duration") else record["status"]
    )
    print(
        f"\r[{'#' * done}{'.' * (BAR - done)}] {record['progress']:4.0%} {seconds:>14}  {path.name}",
        end="",
        file=err,
    )


def _summary(path: Path, record: dict[str, Any]) -> str:
    if record["status"] == "failed":
        return f"failed   {record['id']}  {path}: {record.get('reason')}"
    reused = f", reused from {record['reused_from']}" if record.get("reused_from") else ""
    duration = f"{record['duration']:.1f} s" if record.get("duration") else "?"
    return f"{record['status']:<8} {record['id']}  {path} ({duration}, {record['segments']} segments{reused})"

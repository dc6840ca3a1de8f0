"""``record=true``: a live stream's audio kept as Opus in Ogg on the stream's own timeline, served
back for playing a final where it was said, deleted with the stream, expired by the retention.
Real server on loopback, real WebSocket client, real speech, real PyAV decoding of the file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.conftest import Server, start_server, stream_audio
from tests.conftest import PROSE, SmallDisk, Synth
from voxindex.audio import decode_file
from voxindex.config import Settings
from voxindex.index.stream_audio import BIT_RATE
from voxindex.models.whisper import WhisperModel


@pytest.fixture(scope="module")
def speech(synth: Synth) -> np.ndarray:
    gap = np.zeros(8000, np.float32)
    return np.concatenate([gap, synth(PROSE[0]), gap, synth(PROSE[1]), gap])


def serve(model: WhisperModel, data: Path, **overrides: object) -> Iterator[Server]:
    settings = replace(Settings(no_auth=True, data_dir=data, cache_dir=data, idle_timeout_s=20), **overrides)
    srv, uv, thread = start_server(settings, model)
    try:
        yield srv
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def recorder(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tiny, tmp_path_factory.mktemp("record"))


def data_dir(srv: Server) -> Path:
    path: Path = srv.app.state.services.settings.data_dir  # type: ignore[attr-defined]
    return path


def lag_of(kept: np.ndarray, sent: np.ndarray) -> int:
    """The shift (samples) that best lines the kept audio up with what was sent."""
    n = min(kept.size, sent.size) - 800
    scores = {
        lag: float(np.dot(kept[400 + lag : 400 + lag + n - 400], sent[400:n])) for lag in range(-400, 401, 4)
    }
    return max(scores, key=lambda lag: scores[lag])


def test_a_recorded_stream_keeps_its_audio_on_the_streams_timeline(
    recorder: Server, speech: np.ndarray
) -> None:
    session = asyncio.run(stream_audio(recorder.ws, speech, speed=4.0, params="?record=true"))
    stream_id = session.of("ready")[0]["stream_id"]
    finals = session.of("final")
    assert len(finals) >= 2 and session.close_code == 1000
    file = data_dir(recorder) / "audio" / f"{stream_id}.ogg"
    assert file.is_file()
    # compressed: Opus at 24 kbit/s, not 256 kbit/s of PCM16
    seconds = speech.size / 16000
    assert file.stat().st_size < seconds * BIT_RATE / 8 * 1.5

    response = httpx.get(f"{recorder.url}/v1/streams/{stream_id}/audio")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/ogg"
    assert response.content == file.read_bytes()
    kept = decode_file(file)
    assert abs(kept.size - speech.size) <= 320  # every sample, within one Opus frame
    assert abs(lag_of(kept, speech)) <= 16  # sample n of the stream is sample n of the file (1 ms)
    for final in finals:  # where a final says its words were, the file has them
        a, b = int(final["start"] * 16000), int(final["end"] * 16000)
        assert np.sqrt(np.mean(kept[a:b] ** 2)) > 10 * np.sqrt(np.mean(kept[:4000] ** 2)) + 1e-4

    listed = httpx.get(f"{recorder.url}/v1/streams").json()["streams"]
    entry = next(s for s in listed if s["id"] == stream_id)
    assert entry["audio"] is True and entry["duration"] == pytest.approx(seconds, abs=0.05)
    ranged = httpx.get(f"{recorder.url}/v1/streams/{stream_id}/audio", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100  # the browser seeks with ranges

    assert httpx.delete(f"{recorder.url}/v1/streams/{stream_id}").status_code == 200
    assert not file.exists()
    gone = httpx.get(f"{recorder.url}/v1/streams/{stream_id}/audio")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_streams_keep_no_audio_unless_asked(recorder: Server, speech: np.ndarray) -> None:
    session = asyncio.run(stream_audio(recorder.ws, speech[: 16000 * 3], speed=4.0))
    stream_id = session.of("ready")[0]["stream_id"]
    assert not (data_dir(recorder) / "audio" / f"{stream_id}.ogg").exists()
    response = httpx.get(f"{recorder.url}/v1/streams/{stream_id}/audio")
    assert response.status_code == 404 and "no audio kept" in response.json()["error"]["message"]
    entry = next(s for s in httpx.get(f"{recorder.url}/v1/streams").json()["streams"] if s["id"] == stream_id)
    assert entry["audio"] is False


def test_kept_audio_is_deleted_after_the_retention_but_the_transcript_stays(
    tiny: WhisperModel, tmp_path: Path, speech: np.ndarray
) -> None:
    for srv in serve(tiny, tmp_path, record_retention_s=3.0):
        session = asyncio.run(stream_audio(srv.ws, speech[: 16000 * 5], speed=4.0, params="?record=true"))
        stream_id = session.of("ready")[0]["stream_id"]
        file = tmp_path / "audio" / f"{stream_id}.ogg"
        assert file.is_file()
        deadline = time.monotonic() + 15
        while file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not file.exists(), "the retention sweeper left the audio"
        assert httpx.get(f"{srv.url}/v1/streams/{stream_id}/audio").status_code == 404
        transcript = httpx.get(f"{srv.url}/v1/streams/{stream_id}/transcript").json()
        assert transcript["segments"] and transcript["stream"]["audio"] is False


def test_a_full_audio_disk_stops_the_recording_not_the_transcript(
    tiny: WhisperModel, tmp_path: Path, small_disk: SmallDisk, speech: np.ndarray
) -> None:
    """The audio directory on its own filesystem, full: the client is told once
    (``recording_unavailable``) and gets every final; the store, elsewhere, is unharmed."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "audio").symlink_to(small_disk.path)
    small_disk.fill()
    for srv in serve(tiny, data):
        session = asyncio.run(stream_audio(srv.ws, speech, speed=4.0, params="?record=true"))
        errors = session.of("error")
        assert [e["code"] for e in errors] == ["recording_unavailable"], errors
        assert "transcription goes on" in errors[0]["message"]
        assert len(session.of("final")) >= 2 and session.close_code == 1000


def test_record_needs_the_index(tiny: WhisperModel, tmp_path: Path, speech: np.ndarray) -> None:
    for srv in serve(tiny, tmp_path, index=False):
        session = asyncio.run(stream_audio(srv.ws, speech[:16000], params="?record=true"))
        assert session.close_code == 4400
        assert "record=true needs the transcript index" in session.of("error")[0]["message"]

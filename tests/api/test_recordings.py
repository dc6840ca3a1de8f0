"""Uploaded recordings are transcribed in the background on the live engine and indexed."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import websockets

from tests.api.conftest import Server, frames_of, free_port, pcm16, start_server
from tests.conftest import HARVARD, PROSE, Synth, corpus_wer, load_fixture, onset
from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel

SR = 16000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm16(audio))
    return out.getvalue()


def video_bytes(audio: np.ndarray | None, container: str, vcodec: str, acodec: str) -> bytes:
    """A small video file (moving grey frames) with ``audio`` as its sound track, or none."""
    out_file = io.BytesIO()
    with av.open(out_file, "w", format=container) as out:
        video = out.add_stream(vcodec, rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        sound = (
            out.add_stream(acodec, rate=48000 if acodec == "libopus" else SR) if audio is not None else None
        )
        if sound is not None:
            sound.layout = "mono"
        seconds = audio.size / SR if audio is not None else 2.0
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 5 % 255, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None and audio is not None:
            pcm = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
            pcm.sample_rate = SR
            resampler = av.AudioResampler(
                format=sound.codec_context.format.name, layout="mono", rate=sound.codec_context.sample_rate
            )
            for chunk in resampler.resample(pcm) + resampler.resample(None):
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return out_file.getvalue()


@pytest.fixture(scope="module")
def rec_server(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("recordings")
    (root / "import").mkdir()
    settings = Settings(no_auth=True, cache_dir=root, data_dir=root / "data", import_dir=root / "import")
    srv, uv, thread = start_server(settings, tiny)
    yield srv
    uv.should_exit = True
    thread.join(timeout=60)


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/v1/recordings", files={"file": (name, data)}, timeout=60)


def wait_done(
    url: str, recording_id: str, timeout: float = 300
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until indexed or failed; every status seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/recordings/{recording_id}").json()
        seen.append(status)
        if status["status"] in ("indexed", "failed"):
            return status, seen
        time.sleep(0.2)
    raise AssertionError(f"recording stuck: {seen[-1]}")


def transcript(url: str, recording_id: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/v1/streams/{recording_id}/transcript").json()["segments"])


def assert_monotonic(seen: list[dict[str, Any]]) -> None:
    order = {"queued": 0, "transcribing": 1, "indexed": 2}
    assert [order[s["status"]] for s in seen] == sorted(order[s["status"]] for s in seen)
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    done = [s["done_s"] for s in seen]
    assert done == sorted(done)


def test_a_speech_file_is_indexed_with_timestamps_that_find_the_speech(
    rec_server: Server, synth: Synth
) -> None:
    parts = [silence(3.0), synth(PROSE[0]), silence(2.0), load_fixture("goforward.wav"), silence(2.0)]
    onset_human = sum(p.size for p in parts[:3]) / SR + onset(parts[3])
    parts += [synth(PROSE[1]), silence(1.0)]
    onset_last = sum(p.size for p in parts[:5]) / SR + onset(parts[5])
    audio = np.concatenate(parts)
    response = upload(rec_server.url, "meeting.wav", wav_bytes(audio))
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued" and created["filename"] == "meeting.wav"
    status, seen = wait_done(rec_server.url, created["id"])
    assert status["status"] == "indexed" and status["duration"] == pytest.approx(audio.size / SR, abs=0.05)
    assert_monotonic(seen)
    segments = transcript(rec_server.url, created["id"])
    reference = f"{PROSE[0]} go forward ten meters {PROSE[1]}"
    assert corpus_wer([(reference, " ".join(s["text"] for s in segments))]) <= 0.15
    hits = httpx.get(f"{rec_server.url}/v1/search", params={"q": "forward meters", "mode": "keyword"}).json()
    hit = next(h for h in hits["hits"] if h["recording_id"] == created["id"])
    assert abs(hit["start"] - onset_human) <= 0.5  # seek there and you hear it
    last = next(s for s in segments if s["start"] > onset_human + 2)
    assert abs(last["start"] - onset_last) <= 0.5
    media = httpx.get(
        f"{rec_server.url}/v1/recordings/{created['id']}/media", headers={"Range": "bytes=0-99"}
    )
    assert media.status_code == 206 and len(media.content) == 100
    whole = httpx.get(f"{rec_server.url}/v1/recordings/{created['id']}/media")  # many body chunks
    assert whole.status_code == 200 and whole.content == wav_bytes(audio)


@pytest.mark.parametrize(
    ("name", "container", "vcodec", "acodec"),
    [("talk.mp4", "mp4", "mpeg4", "aac"), ("talk.webm", "webm", "libvpx", "libopus")],
)
def test_the_sound_track_of_a_video_is_indexed(
    rec_server: Server, synth: Synth, name: str, container: str, vcodec: str, acodec: str
) -> None:
    audio = np.concatenate([silence(1.0), synth(PROSE[7]), silence(1.0), synth(PROSE[8]), silence(1.0)])
    created = upload(rec_server.url, name, video_bytes(audio, container, vcodec, acodec)).json()
    status, seen = wait_done(rec_server.url, created["id"])
    assert status["status"] == "indexed", status
    assert_monotonic(seen)
    text = " ".join(s["text"] for s in transcript(rec_server.url, created["id"]))
    assert corpus_wer([(f"{PROSE[7]} {PROSE[8]}", text)]) <= 0.15


def test_identical_content_reuses_the_transcript(rec_server: Server, synth: Synth) -> None:
    data = wav_bytes(np.concatenate([silence(0.5), synth(HARVARD[2]), silence(0.5)]))
    first = upload(rec_server.url, "a.wav", data).json()
    wait_done(rec_server.url, first["id"])
    again = upload(rec_server.url, "copy-of-a.wav", data).json()
    assert again["id"] != first["id"]
    assert again["status"] == "indexed" and again["reused_from"] == first["id"]  # at once, no transcription
    ours, theirs = transcript(rec_server.url, again["id"]), transcript(rec_server.url, first["id"])
    assert [(s["text"], s["start"]) for s in ours] == [(s["text"], s["start"]) for s in theirs] != []


def test_a_url_in_the_import_dir_is_read_and_nothing_else(rec_server: Server, synth: Synth) -> None:
    root = Path(rec_server.app.state.services.settings.import_dir)
    (root / "call.wav").write_bytes(wav_bytes(np.concatenate([synth(HARVARD[3]), silence(0.5)])))
    created = httpx.post(f"{rec_server.url}/v1/recordings", json={"url": f"file://{root}/call.wav"}).json()
    assert wait_done(rec_server.url, created["id"])[0]["status"] == "indexed"
    for url in (f"file://{root}/../../etc/passwd", "https://example.com/a.wav", f"file://{root}/nope.wav"):
        refused = httpx.post(f"{rec_server.url}/v1/recordings", json={"url": url})
        assert refused.status_code in (400, 404), url


@pytest.mark.parametrize("route", ["recordings", "streams"])
def test_delete_removes_text_vectors_and_media(rec_server: Server, synth: Synth, route: str) -> None:
    """Through either route: a recording is listed among the streams, and deleting it there
    must not leave its media file behind."""
    created = upload(
        rec_server.url, "gone.wav", wav_bytes(np.concatenate([synth(HARVARD[4]), silence(0.5)]))
    ).json()
    wait_done(rec_server.url, created["id"])
    media = Path(rec_server.app.state.services.index.store.get_recording(created["id"]).media)
    assert media.exists()
    assert httpx.delete(f"{rec_server.url}/v1/{route}/{created['id']}").status_code == 200
    assert httpx.get(f"{rec_server.url}/v1/recordings/{created['id']}").status_code == 404
    assert not media.exists()
    hits = httpx.get(
        f"{rec_server.url}/v1/search", params={"q": HARVARD[4], "mode": "vector", "k": 50}
    ).json()
    assert all(h["stream_id"] != created["id"] for h in hits["hits"])


def unknown_codec_wav() -> bytes:
    data = bytearray(wav_bytes(silence(1.0)))
    data[20:22] = (0x3412).to_bytes(2, "little")  # a WAVE format tag no decoder knows
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        ("notes.txt", lambda: b"minutes of the meeting, as text " * 100, "not a readable"),
        ("empty.wav", lambda: b"", "empty"),
        ("cut.wav", lambda: wav_bytes(silence(2.0))[:20_000], "truncated"),
        ("silent-film.mp4", lambda: video_bytes(None, "mp4", "mpeg4", "aac"), "no audio track"),
        ("odd.wav", unknown_codec_wav, "not a readable"),
    ],
)
def test_bad_media_is_refused_at_upload_with_a_reason(
    rec_server: Server, name: str, make: Callable[[], bytes], needle: str
) -> None:
    refused = upload(rec_server.url, name, make())
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "bad_audio" and needle in error["message"] and name in error["message"]


def audio_bytes(audio: np.ndarray, container: str, codec: str) -> bytes:
    out_file = io.BytesIO()
    with av.open(out_file, "w", format=container) as out:
        sound = out.add_stream(codec, rate=48000)
        sound.layout = "mono"
        pcm = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
        pcm.sample_rate = SR
        resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="mono", rate=48000)
        for chunk in resampler.resample(pcm) + resampler.resample(None):
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    return out_file.getvalue()


def test_truncated_compressed_files_are_refused_or_end_never_stuck(rec_server: Server, synth: Synth) -> None:
    audio = np.concatenate([synth(PROSE[2]), silence(0.5), synth(PROSE[3])])
    mp4 = video_bytes(audio, "mp4", "mpeg4", "aac")
    refused = upload(rec_server.url, "cut.mp4", mp4[: len(mp4) * 2 // 3])  # its index is at the end
    assert refused.status_code == 400 and "cut.mp4" in refused.json()["error"]["message"]
    ogg = audio_bytes(audio, "ogg", "libopus")
    created = upload(rec_server.url, "cut.ogg", ogg[: len(ogg) // 2])  # a stream format: half decodes
    assert created.status_code == 202
    status, _ = wait_done(rec_server.url, created.json()["id"])
    if status["status"] == "indexed":
        text = " ".join(s["text"] for s in transcript(rec_server.url, status["id"]))
        assert corpus_wer([(PROSE[2], text)]) <= 0.5  # what was there is transcribed
    else:
        assert status["reason"]


def test_oversized_uploads_get_413(tiny: WhisperModel, tmp_path: Path) -> None:
    srv, uv, thread = start_server(Settings(no_auth=True, cache_dir=tmp_path, max_body_bytes=50_000), tiny)
    try:
        refused = upload(srv.url, "long.wav", wav_bytes(silence(5.0)))
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "payload_too_large"
    finally:
        uv.should_exit = True
        thread.join(timeout=60)


# ---------------- restarts and live streams ----------------
def long_recording(synth: Synth, minutes: float) -> tuple[np.ndarray, str]:
    parts, words = [], []
    for sentence in itertools.cycle(PROSE + HARVARD):
        parts += [synth(sentence), silence(0.7)]
        words.append(sentence)
        if sum(p.size for p in parts) >= minutes * 60 * SR:
            break
    return np.concatenate(parts), " ".join(words)


def test_a_restart_mid_transcription_resumes_without_duplicates(
    tiny: WhisperModel, tmp_path: Path, synth: Synth
) -> None:
    settings = Settings(no_auth=True, cache_dir=tmp_path, data_dir=tmp_path / "data")
    port = free_port()
    srv, uv, thread = start_server(settings, tiny, port=port)
    audio, reference = long_recording(synth, 2.0)
    created = upload(srv.url, "long.wav", wav_bytes(audio)).json()
    try:
        while (status := httpx.get(f"{srv.url}/v1/recordings/{created['id']}").json())["done_s"] <= 0:
            time.sleep(0.1)
        assert status["status"] == "transcribing" and status["progress"] < 0.8
    finally:
        uv.should_exit = True
        thread.join(timeout=60)
    srv, uv, thread = start_server(settings, tiny, port=port)  # same data: the recording resumes
    try:
        status, _ = wait_done(srv.url, created["id"])
        assert status["status"] == "indexed"
        segments = transcript(srv.url, created["id"])
        assert [s["segment_index"] for s in segments] == list(range(len(segments)))
        assert all(a["end"] <= b["start"] + 0.05 for a, b in itertools.pairwise(segments))  # no overlap
        assert corpus_wer([(reference, " ".join(s["text"] for s in segments))]) <= 0.15  # nothing twice
    finally:
        uv.should_exit = True
        thread.join(timeout=60)


async def test_live_streams_keep_their_latency_while_a_recording_transcribes(
    rec_server: Server, synth: Synth
) -> None:
    audio, _ = long_recording(synth, 3.0)
    created = await asyncio.to_thread(upload, rec_server.url, "background.wav", wav_bytes(audio))
    recording_id = created.json()["id"]
    while (await asyncio.to_thread(httpx.get, f"{rec_server.url}/v1/recordings/{recording_id}")).json()[
        "status"
    ] != "transcribing":
        await asyncio.sleep(0.2)

    async def speak(sentences: list[str]) -> tuple[list[float], list[tuple[str, str]]]:
        """Real-time speech; how long after each utterance ended its final came."""
        clips = [synth(s) for s in sentences]
        audio = np.concatenate([np.concatenate([silence(1.0), c]) for c in clips] + [silence(1.5)])
        ends = list(itertools.accumulate(SR + c.size for c in clips))
        delays: list[float] = []
        async with websockets.connect(f"{rec_server.ws}/v1/stream") as ws:
            await ws.recv()
            t0 = time.monotonic()

            async def send() -> None:
                for i, frame in enumerate(frames_of(pcm16(audio), 3200)):
                    await ws.send(frame)
                    await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.1 - time.monotonic()))
                await ws.send(json.dumps({"type": "close"}))

            sender = asyncio.create_task(send())
            finals = []
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "final":
                    finals.append(message["text"])
                    spoken = next(e for e in ends if e / SR >= message["end"] - 0.3) / SR
                    delays.append(time.monotonic() - t0 - spoken)
            await sender
        return delays, [(" ".join(sentences), " ".join(finals))]

    results = await asyncio.gather(speak(PROSE[0:3]), speak(PROSE[4:7]))
    delays = sorted(d for r in results for d in r[0])
    p95 = delays[int(0.95 * (len(delays) - 1))]
    assert p95 <= 3.5, delays  # generous: a live final waits for at most one recording window
    assert corpus_wer([pair for r in results for pair in r[1]]) <= 0.15
    status = (await asyncio.to_thread(httpx.get, f"{rec_server.url}/v1/recordings/{recording_id}")).json()
    assert status["done_s"] > 0  # and the recording moved on meanwhile
    await asyncio.to_thread(wait_done, rec_server.url, recording_id)


def test_voxindex_index_uploads_and_follows_to_the_end(
    rec_server: Server, synth: Synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voxindex.cli import main

    good = tmp_path / "standup.wav"
    good.write_bytes(wav_bytes(np.concatenate([silence(0.5), synth(PROSE[9]), silence(0.5)])))
    bad = tmp_path / "notes.txt"
    bad.write_text("not media " * 50)
    assert main(["index", "--url", rec_server.url, str(good)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("indexed ") and "standup.wav" in out and "segments" in out
    assert "100%" in err and "#" * 30 in err  # the progress bar reached the end
    assert main(["search", "version of the application", "--url", rec_server.url, "--mode", "keyword"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["score", "source", "from", "text"]
    assert any(row.split()[1] == "rec" and "application" in row for row in table[1:])  # a row per hit
    assert main(["index", "--url", rec_server.url, str(bad), str(tmp_path / "missing.wav")]) == 2
    out, err = capsys.readouterr()
    assert "bad_audio" in err and "notes.txt" in err and "missing.wav" in err and out == ""


def test_deleting_a_recording_mid_transcription_stops_it_cleanly(rec_server: Server, synth: Synth) -> None:
    audio, _ = long_recording(synth, 1.5)
    doomed = upload(rec_server.url, "doomed.wav", wav_bytes(audio)).json()
    while httpx.get(f"{rec_server.url}/v1/recordings/{doomed['id']}").json()["done_s"] <= 0:
        time.sleep(0.1)
    assert httpx.delete(f"{rec_server.url}/v1/recordings/{doomed['id']}").status_code == 200
    time.sleep(1.0)  # windows in flight finish and are dropped
    assert rec_server.app.state.services.index.store.segments_of(doomed["id"]) == []
    after = upload(
        rec_server.url, "after.wav", wav_bytes(np.concatenate([synth(PROSE[10]), silence(0.5)]))
    ).json()
    assert wait_done(rec_server.url, after["id"])[0]["status"] == "indexed"  # the engine goes on


def test_a_recording_is_diarized_over_the_whole_file(rec_server: Server, synth: Synth) -> None:
    """Recordings get speakers by default: three distinct voices, whole-file clustering; each
    word's label follows the turn it was said in, and segments carry their dominant speaker."""
    from tests.conversations import attribution, conversation, speaker_of, voices

    audio, turns = conversation(voices(synth), ["librivox", "cards", "piper"], turns=9, seed=5)
    created = upload(rec_server.url, "three.wav", wav_bytes(audio)).json()
    status, _ = wait_done(rec_server.url, created["id"])
    assert status["status"] == "indexed"
    segments = transcript(rec_server.url, created["id"])
    pairs = [
        (t, w["speaker"])
        for s in segments
        for w in s["words"]
        if (t := speaker_of(turns, w["start"], w["end"])) is not None
    ]
    assert len(pairs) >= 60 and {label for _, label in pairs} == {0, 1, 2}
    assert attribution(pairs) >= 0.9
    assert all(s["speaker"] in (0, 1, 2) for s in segments)

"""Hostile and broken clients: every one gets a documented error or close code, and nobody else notices."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import numpy as np
import pytest
import websockets

from tests.api.conftest import Server, Session, frames_of, pcm16, start_server, stream_audio
from tests.conftest import PROSE, Synth, corpus_wer
from voxindex.config import Settings
from voxindex.models.whisper import WhisperModel

GAP = np.zeros(12800, dtype=np.float32)


async def refused(url: str) -> tuple[dict[str, object], int | None, str | None]:
    async with websockets.connect(url) as ws:
        message = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        return message, ws.close_code, ws.close_reason


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sample_rate=1", "sample_rate"),
        ("sample_rate=10000000", "sample_rate"),
        ("sample_rate=abc", "sample_rate"),
        ("encoding=mulaw", "encoding"),
        ("endpointing_ms=-5", "endpointing_ms"),
        ("interim_results=maybe", "interim_results"),
        ("language=fr", "English-only"),
        ("colour=blue", "unknown query parameter"),
    ],
)
async def test_bad_parameters_are_refused_with_4400(server: Server, query: str, field: str) -> None:
    message, code, reason = await refused(f"{server.ws}/v1/stream?{query}")
    assert message["type"] == "error" and message["code"] == "invalid_request"
    assert field in str(message["message"])
    assert code == 4400 and reason


async def read_all(ws: websockets.ClientConnection) -> list[dict[str, object]]:
    """Every message until the server closes, whatever the close code."""
    messages = []
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            messages.append(json.loads(await ws.recv()))
    return messages


async def test_unknown_messages_get_errors_and_the_stream_goes_on(server: Server, synth: Synth) -> None:
    speech = pcm16(np.concatenate([GAP, synth(PROSE[9]), GAP]))
    half = len(speech) // 2 + 1  # odd: splits a sample across frames
    frames: list[bytes | str] = [
        json.dumps({"type": "dance"}),  # a message type from some newer client
        *frames_of(speech[:half]),
        json.dumps({"type": "keepalive", "extra": [1, 2]}),
        *frames_of(speech[half:]),
        b"\x01",  # a dangling byte: half a sample at the end of the stream
    ]
    async with websockets.connect(f"{server.ws}/v1/stream") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "close"}))
        messages = [json.loads(m) async for m in ws]
        code = ws.close_code
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["invalid_request", "bad_audio"]
    assert "dance" in errors[0]["message"] and "1 byte" in errors[1]["message"]
    finals = [m["text"] for m in messages if m["type"] == "final"]
    assert corpus_wer([(PROSE[9], " ".join(finals))]) <= 0.10  # the odd split lost nothing
    assert messages[-1]["type"] == "closed" and code == 1000


async def stream_then(
    server: Server, speech: np.ndarray, last: bytes | str
) -> tuple[list[dict[str, object]], int]:
    """Send ``speech`` (fast), then ``last``; everything the server sent and its close code."""
    async with websockets.connect(f"{server.ws}/v1/stream", max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames_of(pcm16(speech)):
            await ws.send(frame)
        await ws.send(last)
        messages = await read_all(ws)
        assert ws.close_code is not None
        return messages, ws.close_code


@pytest.mark.parametrize(
    ("last", "code", "error"),
    [
        ("this is not json", 4400, "protocol_violation"),
        (json.dumps([1, 2, 3]), 4400, "protocol_violation"),
        (json.dumps({"kind": "close"}), 4400, "protocol_violation"),
        ("{" * 100_000, 4413, "frame_too_large"),  # a control message over 4 KiB
        (b"\x00" * 70_000, 4413, "frame_too_large"),  # an audio frame over 64 KiB
    ],
)
async def test_a_protocol_breach_ends_the_stream_but_keeps_what_was_said(
    server: Server, synth: Synth, last: bytes | str, code: int, error: str
) -> None:
    messages, close = await stream_then(server, np.concatenate([GAP, synth(PROSE[9]), GAP]), last)
    assert close == code
    assert [m["code"] for m in messages if m["type"] == "error"] == [error]
    finals = " ".join(str(m["text"]) for m in messages if m["type"] == "final")
    assert corpus_wer([(PROSE[9], finals)]) <= 0.10  # finalized, not thrown away
    assert messages[-1]["type"] == "closed"


async def test_a_frame_past_the_protocol_limit_is_cut_off_with_1009(server: Server) -> None:
    async with websockets.connect(f"{server.ws}/v1/stream", max_size=None) as ws:
        await ws.recv()
        await ws.send(b"\x00" * (2 * 1024 * 1024))  # over 4x the frame limit: never buffered
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1009


async def test_vanishing_and_stalled_clients_do_not_disturb_others(server: Server, synth: Synth) -> None:
    speech = np.concatenate([GAP, synth(PROSE[10]), GAP])
    done = asyncio.Event()

    async def stall() -> None:
        """Sends speech but never reads a message until everyone else is done."""
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            for frame in frames_of(pcm16(np.concatenate([synth(PROSE[2]), GAP, synth(PROSE[3]), GAP]))):
                await ws.send(frame)
            await done.wait()

    async def survive() -> Session:
        try:
            return await stream_audio(server.ws, speech, speed=2.0)
        finally:
            done.set()

    async def vanish() -> None:
        ws = await websockets.connect(f"{server.ws}/v1/stream")
        await ws.recv()
        for frame in frames_of(pcm16(synth(PROSE[3]))[: 16000 * 2 * 2]):  # two seconds: mid-utterance
            await ws.send(frame)
        await asyncio.sleep(0.5)
        ws.transport.abort()  # no close frame: the TCP connection just dies

    survivor, _, _ = await asyncio.gather(survive(), vanish(), stall())
    assert survivor.close_code == 1000
    assert corpus_wer([(PROSE[10], survivor.final_text)]) <= 0.15
    async with httpx.AsyncClient() as client:
        for _ in range(100):  # the engine forgets the vanished stream once it has finalized it
            if (await client.get(f"{server.url}/health")).json()["streams"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await client.get(f"{server.url}/health")).json()["streams"] == 0


async def test_over_capacity_is_refused_with_1013(tiny: WhisperModel, tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv, uv, thread = start_server(Settings(max_streams=2, cache_dir=tmp_path, no_auth=True), tiny)
    try:
        first = await websockets.connect(f"{srv.ws}/v1/stream")
        second = await websockets.connect(f"{srv.ws}/v1/stream")
        for ws in (first, second):
            assert json.loads(await ws.recv())["type"] == "ready"
        message, code, reason = await refused(f"{srv.ws}/v1/stream")
        assert message["code"] == "over_capacity" and code == 1013 and "2 streams" in str(reason)
        await first.send(json.dumps({"type": "close"}))
        assert json.loads(await first.recv())["type"] == "closed"
        await first.close()
        third = await websockets.connect(f"{srv.ws}/v1/stream")  # room again
        assert json.loads(await third.recv())["type"] == "ready"
        await third.close()
        await second.close()
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


async def test_a_client_faster_than_the_engine_is_slowed_not_dropped(
    tiny: WhisperModel,
    synth: Synth,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    srv, uv, thread = start_server(Settings(max_queue_s=2.0, cache_dir=tmp_path, no_auth=True), tiny)
    try:
        sentences = PROSE[:3]
        audio = np.concatenate([np.concatenate([synth(s), GAP]) for s in sentences])
        # one-second frames sent as fast as the socket takes them: 10x+ faster than real time
        session = await stream_audio(srv.ws, audio, speed=1000.0, frame_s=1.0)
        assert session.close_code == 1000
        assert corpus_wer([(" ".join(sentences), session.final_text)]) <= 0.10
        assert session.of("closed")[0]["duration"] == pytest.approx(audio.size / 16000, abs=0.05)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)

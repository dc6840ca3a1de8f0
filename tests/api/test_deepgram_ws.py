"""``/v1/listen`` speaks Deepgram's live protocol: raw clients see Deepgram's messages, and the
unmodified ``livekit-plugins-deepgram`` STT transcribes real speech through it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
import websockets
from livekit.agents import stt as lk_stt
from livekit.plugins import deepgram

from tests.api.conftest import frames_of, pcm16
from tests.conftest import PROSE, KeyedServer, Synth, corpus_wer, frames_48k, load_fixture
from voxindex.audio import alaw_to_float, mulaw_to_float

GAP = np.zeros(16000, dtype=np.float32)
LISTEN = "encoding=linear16&sample_rate=16000&channels=1"


async def listen(
    srv: KeyedServer, query: str, frames: list[bytes], *, then: list[str], pace: float = 0.0
) -> tuple[list[dict[str, Any]], int | None]:
    headers = {"Authorization": f"Token {srv.api_key}"}
    async with websockets.connect(f"{srv.ws}/v1/listen?{query}", additional_headers=headers) as ws:
        for frame in frames:
            await ws.send(frame)
            await asyncio.sleep(pace)
        for message in then:
            await ws.send(message)
        messages = []
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        return messages, ws.close_code


def transcript(messages: list[dict[str, Any]]) -> str:
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    return " ".join(m["channel"]["alternatives"][0]["transcript"] for m in finals)


async def test_a_deepgram_session_has_deepgrams_shape(keyed_server: KeyedServer, synth: Synth) -> None:
    audio = np.concatenate([GAP, synth(PROSE[0]), GAP, synth(PROSE[1]), GAP])
    query = (
        f"{LISTEN}&model=nova-3&language=en-US&interim_results=true&vad_events=true&punctuate=true"
        "&smart_format=true&utterance_end_ms=1000&endpointing=300&no_delay=true&diarize=false&tag=x"
    )
    close = json.dumps({"type": "CloseStream"})
    messages, code = await listen(keyed_server, query, frames_of(pcm16(audio), 3200), then=[close], pace=0.05)
    assert code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "SpeechStarted" and kinds[-1] == "Metadata"
    assert {"Results", "UtteranceEnd"} <= set(kinds)
    results = [m for m in messages if m["type"] == "Results"]
    assert any(not r["is_final"] for r in results)  # interim results
    finals = [r for r in results if r["is_final"]]
    assert [r["speech_final"] for r in finals] == [True, True]  # each sentence ended in a pause
    assert corpus_wer([(f"{PROSE[0]} {PROSE[1]}", transcript(messages))]) <= 0.10
    first = finals[0]
    alt = first["channel"]["alternatives"][0]
    assert alt["transcript"][0].isupper() and alt["transcript"].endswith(".")  # punctuated
    word = alt["words"][0]
    assert set(word) == {"word", "start", "end", "confidence", "punctuated_word"}
    assert word["word"] == word["word"].lower() and word["start"] <= word["end"]
    assert first["start"] == pytest.approx(word["start"], abs=0.01) and first["duration"] > 0
    assert first["metadata"]["request_id"] and first["channel_index"] == [0, 1]
    metadata = messages[-1]
    assert metadata["duration"] == pytest.approx(audio.size / 16000, abs=0.05)
    assert metadata["channels"] == 1 and metadata["request_id"] == first["metadata"]["request_id"]


async def test_finalize_flushes_without_waiting_for_silence(keyed_server: KeyedServer, synth: Synth) -> None:
    speech = pcm16(synth(PROSE[2]))  # no trailing silence: no endpoint can fire
    messages, _ = await listen(
        keyed_server,
        f"{LISTEN}&punctuate=false",
        frames_of(speech),
        then=[
            json.dumps({"type": "KeepAlive"}),
            json.dumps({"type": "Finalize"}),
            json.dumps({"type": "CloseStream"}),
        ],
    )
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    assert finals and finals[0]["from_finalize"] is True and finals[0]["speech_final"] is False
    text = finals[0]["channel"]["alternatives"][0]["transcript"]
    assert text == text.lower() and "." not in text  # punctuate=false: Deepgram's plain words
    assert "SpeechStarted" not in [m["type"] for m in messages]  # vad_events defaults to false
    assert corpus_wer([(PROSE[2], text)]) <= 0.15


def g711(audio: np.ndarray, codec_name: str) -> bytes:
    """Telephone audio: 8 kHz, encoded by FFmpeg's G.711 encoder."""
    frame = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = 16000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
    codec = av.CodecContext.create(codec_name, "w")
    codec.sample_rate, codec.format, codec.layout = 8000, "s16", "mono"
    packets = [p for f in resampler.resample(frame) + resampler.resample(None) for p in codec.encode(f)]
    return b"".join(bytes(p) for p in packets + list(codec.encode(None)))


@pytest.mark.parametrize(("encoding", "codec"), [("mulaw", "pcm_mulaw"), ("alaw", "pcm_alaw")])
async def test_telephony_audio_is_understood(
    keyed_server: KeyedServer, synth: Synth, encoding: str, codec: str
) -> None:
    data = g711(np.concatenate([GAP, synth(PROSE[3]), GAP]), codec)
    messages, code = await listen(
        keyed_server,
        f"encoding={encoding}&sample_rate=8000",
        frames_of(data, 1600),
        then=[json.dumps({"type": "CloseStream"})],
    )
    assert code == 1000 and corpus_wer([(PROSE[3], transcript(messages))]) <= 0.15


def test_g711_tables_match_the_standard() -> None:
    mu = mulaw_to_float(bytes([0x00, 0x7F, 0x80, 0xFF])) * 32768
    assert mu.tolist() == [-32124, 0, 32124, 0]
    a = alaw_to_float(bytes([0xD5, 0x55, 0xAA, 0x2A])) * 32768
    assert a.tolist() == [8, -8, 32256, -32256]


async def test_stereo_is_mixed_down(keyed_server: KeyedServer, synth: Synth) -> None:
    mono = np.concatenate([GAP, synth(PROSE[4]), GAP])
    stereo = np.stack([mono, mono * 0.5], axis=1).reshape(-1)  # interleaved L R
    messages, _ = await listen(
        keyed_server,
        "encoding=linear16&sample_rate=16000&channels=2",
        frames_of(pcm16(stereo)),
        then=[json.dumps({"type": "CloseStream"})],
    )
    assert corpus_wer([(PROSE[4], transcript(messages))]) <= 0.15
    assert messages[-1]["channels"] == 2


@pytest.mark.parametrize(
    ("query", "headers", "status", "err_code"),
    [
        (LISTEN, {"Authorization": "Token vxk_nope_nope"}, 401, "INVALID_AUTH"),
        (LISTEN, {}, 401, "INVALID_AUTH"),
        ("sample_rate=16000", None, 400, "Bad Request"),  # no encoding: containers are not taken
        ("encoding=opus&sample_rate=16000", None, 400, "Bad Request"),
        (f"{LISTEN}&language=fr", None, 400, "Bad Request"),  # English-only model
    ],
)
async def test_refusals_are_http_errors_as_deepgram_gives(
    keyed_server: KeyedServer, query: str, headers: dict[str, str] | None, status: int, err_code: str
) -> None:
    headers = {"Authorization": f"Token {keyed_server.api_key}"} if headers is None else headers
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{keyed_server.ws}/v1/listen?{query}", additional_headers=headers):
            pass
    response = refused.value.response
    assert response.status_code == status
    assert json.loads(response.body)["err_code"] == err_code


async def test_browsers_authenticate_with_the_token_subprotocol(keyed_server: KeyedServer) -> None:
    url = f"{keyed_server.ws}/v1/listen?{LISTEN}"
    async with websockets.connect(url, subprotocols=["token", keyed_server.api_key]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "token"
        await ws.send(json.dumps({"type": "CloseStream"}))
        assert json.loads(await ws.recv())["type"] == "Metadata"


# ---------------- the real LiveKit Deepgram plugin ----------------
async def deepgram_plugin_events(
    srv: KeyedServer, audio: np.ndarray, speed: float = 1.0, **options: Any
) -> list[lk_stt.SpeechEvent]:
    """Stream ``audio`` through the unmodified ``livekit-plugins-deepgram`` STT pointed at
    voxindex, as 48 kHz room frames at ``speed`` × real time; every event it yields."""
    async with aiohttp.ClientSession() as session:
        stt = deepgram.STT(
            api_key=srv.api_key,
            base_url=f"{srv.url}/v1/listen",
            http_session=session,
            model="nova-3",
            language="en-US",
            **options,
        )
        stream = stt.stream()
        events: list[lk_stt.SpeechEvent] = []

        async def collect() -> None:
            async for event in stream:
                events.append(event)

        collector = asyncio.create_task(collect())
        for frame in frames_48k(audio):
            stream.push_frame(frame)
            await asyncio.sleep(frame.duration / speed)
        stream.end_input()
        await asyncio.wait_for(collector, 90)
        await stream.aclose()
        await stt.aclose()
    return events


async def test_the_livekit_deepgram_plugin_transcribes_through_voxindex(
    keyed_server: KeyedServer, synth: Synth
) -> None:
    human = [load_fixture("goforward.wav"), load_fixture("cards-005.wav")]
    reference = "go forward ten meters. eight of spades four of clubs seven of hearts."
    audio = np.concatenate([GAP, human[0], GAP, human[1], GAP])
    events = await deepgram_plugin_events(
        keyed_server, audio, interim_results=True
    )  # real time, as from a room
    kind = lk_stt.SpeechEventType
    kinds = [e.type for e in events]
    finals = [e.alternatives[0].text for e in events if e.type == kind.FINAL_TRANSCRIPT]
    assert kind.INTERIM_TRANSCRIPT in kinds
    assert kinds.count(kind.START_OF_SPEECH) == kinds.count(kind.END_OF_SPEECH) == 2
    assert corpus_wer([(reference, " ".join(finals))]) <= 0.15

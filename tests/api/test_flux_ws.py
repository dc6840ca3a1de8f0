"""``/v2/listen``, Deepgram Flux's turn-taking protocol, against a real server: the unmodified
``livekit-plugins-deepgram`` ``STTv2`` client on real human speech, and a raw WebSocket where
the plugin has no way to say something (``ForceEndTurn``) or hides an answer (``Configure``)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets
from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents import stt as lk_stt
from livekit.plugins import deepgram

from tests.api.conftest import pcm16
from tests.conftest import KeyedServer, corpus_wer
from tests.turn_corpus import HUMAN, Spec, Turn, build, session

Kind = lk_stt.SpeechEventType
FLUX = "model=flux-general-en&encoding=linear16&sample_rate=16000"


def human(name: str, **changes: Any) -> Turn:
    spec = next(s for s in HUMAN if s.name == name)
    return build(Spec(**{**spec.__dict__, **changes}))


@dataclass
class Heard:
    events: list[tuple[float, lk_stt.SpeechEvent]] = field(default_factory=list)  # (audio clock, event)

    def of(self, kind: Kind) -> list[tuple[float, lk_stt.SpeechEvent]]:
        return [(t, e) for t, e in self.events if e.type == kind]

    def kinds(self) -> list[Kind]:
        return [e.type for _, e in self.events if e.type != Kind.RECOGNITION_USAGE]

    def texts(self, kind: Kind) -> list[str]:
        return [e.alternatives[0].text for _, e in self.of(kind)]


async def through_stt_v2(
    srv: KeyedServer, audio: np.ndarray, during: Any = None, **options: Any
) -> tuple[Heard, deepgram.STTv2]:
    """Stream ``audio`` at real-time pace through the unmodified STTv2 pointed at voxindex;
    ``during(stt, t)`` is called as each second of audio is sent."""
    heard = Heard()
    async with aiohttp.ClientSession() as http:
        stt = deepgram.STTv2(
            api_key=srv.api_key, base_url=f"{srv.ws}/v2/listen", http_session=http, **options
        )
        stream = stt.stream()
        t0 = time.perf_counter()

        async def collect() -> None:
            async for event in stream:
                heard.events.append((time.perf_counter() - t0, event))

        collector = asyncio.create_task(collect())
        pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
        for i in range(0, pcm.size, 320):
            chunk = pcm[i : i + 320]
            stream.push_frame(rtc.AudioFrame(chunk.tobytes(), 16000, 1, chunk.size))
            if during is not None and i % 16000 == 0:
                during(stt, i / 16000)
            await asyncio.sleep(max(0.0, t0 + (i + 320) / 16000 - time.perf_counter()))
        stream.end_input()
        await asyncio.wait_for(collector, 60)
        await stream.aclose()
        await stt.aclose()
    return heard, stt


def assert_turns_paired(kinds: list[Kind]) -> None:
    """START → (INTERIM | PREFLIGHT)* → FINAL → END for every turn."""
    speaking = False
    for kind in kinds:
        if kind == Kind.START_OF_SPEECH:
            assert not speaking, kinds
            speaking = True
        elif kind in (Kind.FINAL_TRANSCRIPT, Kind.PREFLIGHT_TRANSCRIPT):
            assert speaking, kinds
        elif kind == Kind.END_OF_SPEECH:
            assert speaking, kinds
            speaking = False
    assert not speaking, kinds


async def test_a_pause_mid_sentence_is_one_turn_and_two_turns_are_two(keyed_server: KeyedServer) -> None:
    amiable, forward = human("amiable"), human("forward")  # "He might even have … 1.2 s … been made"
    audio, placed = session([amiable, forward])
    heard, _ = await through_stt_v2(keyed_server, audio)
    kinds = heard.kinds()
    assert_turns_paired(kinds)
    assert kinds.count(Kind.START_OF_SPEECH) == kinds.count(Kind.END_OF_SPEECH) == 2, kinds
    first, second = heard.texts(Kind.FINAL_TRANSCRIPT)
    assert corpus_wer([(amiable.text, first), (forward.text, second)]) <= 0.2
    assert Kind.INTERIM_TRANSCRIPT in kinds
    for (t, final), (turn, offset) in zip(heard.of(Kind.FINAL_TRANSCRIPT), placed, strict=True):
        data = final.alternatives[0]
        assert data.words and all(w.confidence > 0 for w in data.words)  # STTv2 needs them
        assert offset + turn.end - 0.4 <= data.end_time <= offset + turn.end + 0.4  # where speech ended
        assert t - (offset + turn.end) < 2.5  # before the next turn: not the timeout's 5 s


async def test_an_eager_end_is_resumed_and_the_end_of_turn_says_what_the_last_eager_end_said(
    keyed_server: KeyedServer,
) -> None:
    # eot_threshold 1.0: only the timeout ends a turn, so the eager ends show alone
    married = human("married", pauses=(1.6,))  # "Had he married a more amiable woman … he might"
    audio, [(turn, offset)] = session([married], gap_s=4.0)
    heard, _ = await through_stt_v2(
        keyed_server, audio, eager_eot_threshold=0.3, eot_threshold=1.0, eot_timeout_ms=2000
    )
    kinds = heard.kinds()
    assert_turns_paired(kinds)
    preflights = heard.of(Kind.PREFLIGHT_TRANSCRIPT)
    hold_start, hold_end = offset + turn.holds[0][0], offset + turn.holds[0][1]
    at_hold = [e for t, e in preflights if hold_start < t <= hold_end + 0.5]
    assert at_hold and "woman" in at_hold[0].alternatives[0].text.lower()
    # TurnResumed reaches the agent as an interim after the preflight: the preflight is stale
    after = kinds[kinds.index(Kind.PREFLIGHT_TRANSCRIPT) :]
    assert Kind.INTERIM_TRANSCRIPT in after[: after.index(Kind.FINAL_TRANSCRIPT)]
    [(t_end, final)] = heard.of(Kind.FINAL_TRANSCRIPT)
    assert t_end >= offset + turn.end + 1.9  # the 2 s timeout ended it
    assert final.alternatives[0].text == preflights[-1][1].alternatives[0].text  # Flux's promise
    assert corpus_wer([(turn.text, final.alternatives[0].text)]) <= 0.2


async def test_configure_changes_the_thresholds_mid_stream(keyed_server: KeyedServer) -> None:
    first, second = human("forward"), human("ten of clubs")
    audio, placed = session([first, second], gap_s=4.0)

    def relax(stt: Any, t: float) -> None:
        if t == 4.0:  # after the first turn ended: from now on only 3 s of silence ends one
            stt.update_options(eot_threshold=1.0, eot_timeout_ms=3000)

    heard, _ = await through_stt_v2(keyed_server, audio, during=relax)
    ends = [t for t, _ in heard.of(Kind.FINAL_TRANSCRIPT)]
    assert len(ends) == 2
    (turn1, off1), (turn2, off2) = placed
    assert ends[0] - (off1 + turn1.end) < 1.5  # the default 0.7: as soon as it is plainly over
    assert ends[1] - (off2 + turn2.end) >= 2.9  # 1.0: the timeout


async def test_bad_parameters_are_refused_at_the_handshake_as_deepgram_refuses(
    keyed_server: KeyedServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        for options in ({"model": "nova-3"}, {"eot_threshold": 0.3}, {"eot_timeout_ms": 100}):
            stt = deepgram.STTv2(
                api_key=keyed_server.api_key,
                base_url=f"{keyed_server.ws}/v2/listen",
                http_session=http,
                **options,
            )
            stream = stt.stream(conn_options=APIConnectOptions(max_retry=0, timeout=10))
            stream.push_frame(rtc.AudioFrame(b"\0\0" * 320, 16000, 1, 320))
            with pytest.raises(APIStatusError) as refused:
                async for _ in stream:
                    pass
            assert refused.value.status_code == 400, options
            await stt.aclose()


@pytest.mark.parametrize(
    "query",
    [
        "model=nova-3&encoding=linear16&sample_rate=16000",
        "model=flux-general-en&encoding=opus&sample_rate=16000",
        "model=flux-general-en&encoding=linear16",
        f"{FLUX}&eot_threshold=1.5",
        f"{FLUX}&eot_threshold=0.6&eager_eot_threshold=0.8",  # eager above the end
        f"{FLUX}&eot_threshold=high",
        "model=flux-general-multi&encoding=linear16&sample_rate=16000",  # an English-only model
    ],
)
async def test_refusals_are_http_400s_with_deepgrams_error_body(
    keyed_server: KeyedServer, query: str
) -> None:
    headers = {"Authorization": f"Token {keyed_server.api_key}"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{keyed_server.ws}/v2/listen?{query}", additional_headers=headers):
            pass
    assert refused.value.response.status_code == 400
    body = json.loads(refused.value.response.body)
    assert body["err_code"] == "Bad Request" and body["err_msg"]


async def test_no_credentials_no_stream(keyed_server: KeyedServer) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{keyed_server.ws}/v2/listen?{FLUX}"):
            pass
    assert refused.value.response.status_code == 401


async def raw(srv: KeyedServer, query: str = FLUX) -> Any:
    return websockets.connect(
        f"{srv.ws}/v2/listen?{query}", additional_headers={"Authorization": f"Token {srv.api_key}"}
    )


async def messages_until(ws: Any, kind: str, event: str | None = None) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        seen.append(message)
        if message["type"] == kind and (event is None or message.get("event") == event):
            return seen


async def test_force_end_turn_ends_the_turn_now_and_configure_is_answered(keyed_server: KeyedServer) -> None:
    forward = human("forward")
    async with await raw(keyed_server) as ws:
        connected = json.loads(await ws.recv())
        assert connected["type"] == "Connected" and connected["sequence_id"] == 0
        await ws.send(
            json.dumps({"type": "Configure", "thresholds": {"eot_threshold": 0.9}, "keyterms": ["meters"]})
        )
        await ws.send(json.dumps({"type": "Configure", "thresholds": {"eot_threshold": 0.2}}))
        replies = [json.loads(await ws.recv()) for _ in range(2)]
        assert replies[0]["type"] == "ConfigureSuccess" and replies[0]["thresholds"]["eot_threshold"] == 0.9
        assert replies[0]["thresholds"]["eot_timeout_ms"] == 5000 and replies[0]["keyterms"] == ["meters"]
        assert replies[1]["type"] == "ConfigureFailure" and "eot_threshold" in replies[1]["description"]
        # the speech, with no silence after it; at 2x real time
        data = pcm16(forward.audio[: round(forward.end * 16000)])
        for i in range(0, len(data), 3200):
            await ws.send(data[i : i + 3200])
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "ForceEndTurn"}))
        forced = time.perf_counter()
        seen = await messages_until(ws, "TurnInfo", "EndOfTurn")
        waited = time.perf_counter() - forced
        end = seen[-1]
        assert corpus_wer([(forward.text, end["transcript"])]) <= 0.25
        assert end["turn_index"] == 0 and all(0 < w["confidence"] <= 1 for w in end["words"])
        assert waited < 5.0  # a reading, not the 5 s timeout
        kinds = [m.get("event") for m in seen if m["type"] == "TurnInfo"]
        assert kinds[0] == "StartOfTurn" and "Update" in kinds
        sequence = [m["sequence_id"] for m in [connected, *replies, *seen]]
        assert sequence == list(range(len(sequence)))
        await ws.send(json.dumps({"type": "CloseStream"}))
        with pytest.raises(websockets.ConnectionClosedOK):
            while True:
                await asyncio.wait_for(ws.recv(), 30)


async def test_updates_come_about_every_quarter_second_and_unknown_messages_are_errors(
    keyed_server: KeyedServer,
) -> None:
    forward = human("forward")
    async with await raw(keyed_server) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "Speak"}))
        error = json.loads(await ws.recv())
        assert error["type"] == "Error" and "Speak" in error["description"]
        data = pcm16(np.concatenate([forward.audio, np.zeros(16000, np.float32)]))
        for i in range(0, len(data), 3200):  # 0.1 s frames, real time
            await ws.send(data[i : i + 3200])
            await asyncio.sleep(0.1)
        seen = await messages_until(ws, "TurnInfo", "EndOfTurn")
    turn = [m for m in seen if m["type"] == "TurnInfo"]
    updates = [m for m in turn if m["event"] == "Update"]
    spoken = turn[-1]["audio_window_end"] - turn[0]["audio_window_start"]
    assert len(updates) == pytest.approx(spoken / 0.25, abs=3)
    assert all(m["turn_index"] == 0 for m in turn)
    assert turn[-1]["end_of_turn_confidence"] >= 0.7 and turn[-1]["transcript"]

"""``/v1/realtime``, OpenAI's Realtime API as a transcription session, against a real server:
the unmodified ``livekit-plugins-openai`` ``STT(use_realtime=True)`` and the ``openai`` SDK's
realtime client on real human speech, every server event parsed with the SDK's own models
(strict), and bad input answered with the API's ``error`` event."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import websockets
from livekit.agents import stt as lk_stt
from livekit.agents import utils as lk_utils
from livekit.plugins import openai as lk_openai
from openai import AsyncOpenAI, BadRequestError, OpenAI
from openai.types.realtime import RealtimeServerEvent

from tests.api.test_deepgram_ws import listen, transcript
from tests.conftest import FIXTURES, KeyedServer, corpus_wer, frames_48k, load_fixture, normalized_words
from tests.turn_corpus import HUMAN, build, session
from voxindex.api.realtime_codec import RealtimeCodec
from voxindex.audio import decode_file

Kind = lk_stt.SpeechEventType
# the SDK's model for each server event type (its union is tagged by ``type``)
MODELS: dict[str, Any] = {
    typing.get_args(m.model_fields["type"].annotation)[0]: m
    for m in typing.get_args(typing.get_args(RealtimeServerEvent)[0])
}
REFERENCE = ["go forward ten meters.", "eight of spades four of clubs seven of hearts."]
VAD = {"type": "server_vad"}


def pcm_at(rate: int, *names: str, gap_s: float = 1.0) -> bytes:
    """The recordings at ``rate``, ``gap_s`` of silence before, between and after: PCM16."""
    gap = np.zeros(int(rate * gap_s), np.float32)
    parts = [gap]
    for name in names:
        parts += [decode_file(FIXTURES / name, rate), gap]
    return (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()


def strict(raw: str | bytes) -> dict[str, Any]:
    """A server event, parsed by the SDK's own types (strict) before the test reads it."""
    event = json.loads(raw)
    MODELS[event["type"]].model_validate(event, strict=True)
    return event  # type: ignore[no-any-return]


@dataclass
class Heard:
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def transcripts(self) -> list[str]:
        return [e["transcript"] for e in self.of("conversation.item.input_audio_transcription.completed")]


async def sdk_session(
    srv: KeyedServer,
    pcm: bytes,
    turn_detection: dict[str, Any] | None,
    *,
    rate: int = 24000,
    items: int,
    commit: bool = False,
    speed: float = 2.0,
    include: list[str] | None = None,
) -> Heard:
    """A transcription session through the ``openai`` SDK's realtime client: ``pcm`` appended in
    100 ms events at ``speed`` × real time (then committed, if ``commit``) until ``items``
    items are done; every event the server sent."""
    heard = Heard()
    client = AsyncOpenAI(api_key=srv.api_key, base_url=f"{srv.url}/v1")
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        audio_in = {
            "format": {"type": "audio/pcm", "rate": rate},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": turn_detection,
        }
        update = {"type": "transcription", "audio": {"input": audio_in}, "include": include or []}
        await conn.send({"type": "session.update", "session": update})  # type: ignore[arg-type,typeddict-item]

        async def send() -> None:
            step = rate // 10 * 2
            t0 = time.monotonic()
            for i in range(0, len(pcm), step):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())
                await asyncio.sleep(max(0.0, t0 + (i + step) / (2 * rate) / speed - time.monotonic()))
            if commit:
                await conn.input_audio_buffer.commit()

        sender = asyncio.create_task(send())
        while len(heard.of("conversation.item.done")) < items:
            heard.events.append(strict(await asyncio.wait_for(conn.recv_bytes(), 60)))
        await sender
    return heard


def assert_items_chained(heard: Heard) -> None:
    """Each committed item follows the one before; each is completed once, deltas first, and
    its deltas add up to its transcript."""
    committed = heard.of("input_audio_buffer.committed")
    completed = heard.of("conversation.item.input_audio_transcription.completed")
    assert [c["item_id"] for c in committed] == [c["item_id"] for c in completed]
    added, done = heard.of("conversation.item.added"), heard.of("conversation.item.done")
    assert (
        [a["item"]["id"] for a in added]
        == [d["item"]["id"] for d in done]
        == [c["item_id"] for c in committed]
    )
    assert [d["item"]["content"][0]["transcript"] for d in done] == heard.transcripts()
    assert [c.get("previous_item_id") for c in committed] == [None] + [c["item_id"] for c in committed[:-1]]
    for done in completed:
        deltas = [
            d["delta"]
            for d in heard.of("conversation.item.input_audio_transcription.delta")
            if d["item_id"] == done["item_id"]
        ]
        assert "".join(deltas) == done["transcript"]
        assert done["usage"]["type"] == "duration" and done["usage"]["seconds"] > 0
        assert done["words"] and all(0 < w["confidence"] <= 1 for w in done["words"])  # voxindex's


async def test_an_sdk_session_with_server_vad_has_openais_events_in_openais_order(
    keyed_server: KeyedServer,
) -> None:
    pcm = pcm_at(24000, "goforward.wav", "cards-005.wav")
    heard = await sdk_session(keyed_server, pcm, VAD, items=2)
    assert heard.types()[:2] == ["session.created", "session.updated"]
    assert corpus_wer(list(zip(REFERENCE, heard.transcripts(), strict=True))) <= 0.15
    assert_items_chained(heard)
    flow = [t for t in heard.types()[2:] if t != "conversation.item.input_audio_transcription.delta"]
    one = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
    assert flow == one + one
    started, stopped = (
        heard.of("input_audio_buffer.speech_started"),
        heard.of("input_audio_buffer.speech_stopped"),
    )
    # where each recording lies: 1 s of silence before, between and after
    spans, t = [], 1000
    for name in ("goforward.wav", "cards-005.wav"):
        length = round(decode_file(FIXTURES / name).size / 16)
        spans.append((t, t + length))
        t += length + 1000
    for a, b, done, (begin, end) in zip(
        started,
        stopped,
        heard.of("conversation.item.input_audio_transcription.completed"),
        spans,
        strict=True,
    ):
        assert a["item_id"] == b["item_id"] == done["item_id"]
        assert begin - 300 - 100 <= a["audio_start_ms"] < b["audio_end_ms"] <= end + 100  # 300 ms of padding


async def test_semantic_vad_holds_a_mid_sentence_pause_that_server_vad_cuts(
    keyed_server: KeyedServer,
) -> None:
    """The "amiable" turn pauses 1.2 s mid-sentence ("He might even have … been made"): silence
    ends an item there, the turn detector (semantic_vad) does not."""
    amiable = build(next(s for s in HUMAN if s.name == "amiable"))
    audio, _ = session([amiable], gap_s=2.5)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    semantic = await sdk_session(
        keyed_server, pcm, {"type": "semantic_vad", "eagerness": "auto"}, rate=16000, items=1, speed=1.0
    )
    [said] = semantic.transcripts()
    assert corpus_wer([(amiable.text, said)]) <= 0.2
    assert_items_chained(semantic)
    silence = await sdk_session(keyed_server, pcm, VAD, rate=16000, items=2)
    assert len(silence.of("input_audio_buffer.speech_stopped")) == 2  # cut at the pause


async def test_without_turn_detection_the_client_commits(keyed_server: KeyedServer) -> None:
    pcm = pcm_at(24000, "goforward.wav", "cards-005.wav")
    logprobs = "item.input_audio_transcription.logprobs"
    heard = await sdk_session(keyed_server, pcm, None, items=1, commit=True, include=[logprobs])
    [said] = heard.transcripts()
    [done] = heard.of("conversation.item.input_audio_transcription.completed")
    assert [p["token"] for p in done["logprobs"]] == [w["word"] for w in done["words"]]  # a word each
    assert all(p["logprob"] <= 0 for p in done["logprobs"])
    assert corpus_wer([(" ".join(REFERENCE), said)]) <= 0.15  # everything up to the commit: one item
    assert not heard.of("input_audio_buffer.speech_started") and not heard.of(
        "input_audio_buffer.speech_stopped"
    )
    assert heard.of("conversation.item.input_audio_transcription.delta")  # interims before the commit
    assert_items_chained(heard)


async def test_24_khz_and_16_khz_give_the_same_words(keyed_server: KeyedServer) -> None:
    said = []
    for rate in (24000, 16000):
        pcm = pcm_at(rate, "goforward.wav", "cards-005.wav")
        heard = await sdk_session(keyed_server, pcm, VAD, rate=rate, items=2)
        said.append([normalized_words(t) for t in heard.transcripts()])
    assert said[0] == said[1] and sum(map(len, said[0])) >= 10


async def test_the_livekit_openai_realtime_stt_transcribes_as_v1_listen_does(
    keyed_server: KeyedServer,
) -> None:
    gap = np.zeros(16000, np.float32)
    audio = np.concatenate([gap, load_fixture("goforward.wav"), gap, load_fixture("cards-005.wav"), gap])
    events: list[lk_stt.SpeechEvent] = []
    async with lk_utils.http_context.open():
        stt = lk_openai.STT(
            use_realtime=True,
            base_url=f"{keyed_server.url}/v1",
            api_key=keyed_server.api_key,
            model="gpt-4o-transcribe",
        )
        stream = stt.stream()

        async def collect() -> None:
            async for event in stream:
                events.append(event)
                if sum(e.type == Kind.FINAL_TRANSCRIPT for e in events) == 2:
                    return

        collector = asyncio.create_task(collect())
        for frame in frames_48k(audio):  # real time, as from a room
            stream.push_frame(frame)
            await asyncio.sleep(frame.duration)
        stream.end_input()
        await asyncio.wait_for(collector, 30)
        await stream.aclose()
        await stt.aclose()
    kinds = [e.type for e in events if e.type != Kind.RECOGNITION_USAGE]
    finals = [e.alternatives[0].text for e in events if e.type == Kind.FINAL_TRANSCRIPT]
    assert Kind.INTERIM_TRANSCRIPT in kinds
    assert kinds.count(Kind.START_OF_SPEECH) == kinds.count(Kind.END_OF_SPEECH) == 2
    assert (
        kinds.index(Kind.START_OF_SPEECH)
        < kinds.index(Kind.INTERIM_TRANSCRIPT)
        < kinds.index(Kind.FINAL_TRANSCRIPT)
    )
    pcm16k = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    frames = [pcm16k[i : i + 3200] for i in range(0, len(pcm16k), 3200)]
    messages, _ = await listen(
        keyed_server,
        "encoding=linear16&sample_rate=16000&punctuate=true",
        frames,
        then=['{"type":"CloseStream"}'],
        pace=0.05,
    )
    reference = " ".join(REFERENCE)
    realtime_wer, listen_wer = (
        corpus_wer([(reference, " ".join(finals))]),
        corpus_wer([(reference, transcript(messages))]),
    )
    assert realtime_wer <= listen_wer + 0.01 and realtime_wer <= 0.15


def test_stream_true_yields_deltas_that_add_up_to_the_text(keyed_server: KeyedServer) -> None:
    client = OpenAI(api_key=keyed_server.api_key, base_url=f"{keyed_server.url}/v1")
    path = FIXTURES / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    with path.open("rb") as f:
        events = list(client.audio.transcriptions.create(file=f, model="gpt-4o-transcribe", stream=True))
    *deltas, done = events
    assert [e.type for e in deltas] == ["transcript.text.delta"] * len(deltas) and len(deltas) >= 2
    assert done.type == "transcript.text.done" and "".join(d.delta for d in deltas) == done.text
    with path.open("rb") as f:
        whole = client.audio.transcriptions.create(file=f, model="gpt-4o-transcribe")
    assert done.text == whole.text and "Dashwood" in done.text
    with pytest.raises(BadRequestError) as refused:
        client.audio.transcriptions.create(
            file=("x.wav", b"not audio at all"), model="whisper-1", stream=True
        )
    assert refused.value.status_code == 400 and refused.value.code == "bad_audio"


# ---------------- bad input ----------------
class Raw:
    """A transcription session over a raw socket, for what no SDK sends."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))

    async def next(self, kind: str | None = None) -> dict[str, Any]:
        while True:
            event = strict(await asyncio.wait_for(self.ws.recv(), 30))
            if kind is None or event["type"] == kind:
                return event


@contextlib.asynccontextmanager
async def raw(srv: KeyedServer, query: str = "?intent=transcription", **connect: Any) -> Any:
    headers = {"Authorization": f"Bearer {srv.api_key}"}
    async with websockets.connect(
        f"{srv.ws}/v1/realtime{query}", additional_headers=headers, **connect
    ) as ws:
        session = Raw(ws)
        assert (await session.next())["type"] == "session.created"
        yield session


def update(**audio_in: Any) -> dict[str, Any]:
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_in}}}


def append(data: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "response.create", "event_id": "evt_1"}, "unknown_event_type", "type"),
        ("this is not json", "invalid_json", None),
        ({"type": "input_audio_buffer.append", "audio": "#not*base64#"}, "invalid_base64", "audio"),
        ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio"),
        (update(format={"type": "audio/opus"}), "invalid_value", "session.audio.input.format.type"),
        ({"type": "session.update", "session": {"type": "realtime"}}, "invalid_value", "session.type"),
        (append(b"\0" * 150_000), "audio_too_large", "audio"),  # ~3 s; the socket still takes it
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
    ],
)  # fmt: skip
async def test_bad_input_gets_the_apis_error_event_and_the_session_goes_on(
    keyed_server: KeyedServer, event: dict[str, Any] | str, code: str, param: str | None
) -> None:
    async with raw(keyed_server) as s:
        await s.send(event)
        error = await s.next()
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert (error["error"]["code"], error["error"]["param"]) == (code, param) and error["error"][
            "message"
        ]
        if isinstance(event, dict) and "event_id" in event:
            assert error["error"]["event_id"] == event["event_id"]
        pcm = pcm_at(24000, "goforward.wav")  # still open, still transcribing
        for i in range(0, len(pcm), 9600):
            await s.send(append(pcm[i : i + 9600]))
        await s.send({"type": "input_audio_buffer.commit"})
        done = await s.next("conversation.item.input_audio_transcription.completed")
        assert corpus_wer([(REFERENCE[0], done["transcript"])]) <= 0.2


async def test_audio_before_the_session_is_a_transcription_session_is_refused(
    keyed_server: KeyedServer,
) -> None:
    async with raw(keyed_server, query="") as s:  # the GA form: no ?intent, the update says it
        await s.send(append(b"\0" * 4800))
        error = await s.next()
        assert error["error"]["code"] == "session_not_configured"
        await s.send({"type": "session.update", "session": {"type": "transcription"}})
        assert (await s.next())["type"] == "session.updated"
        await s.send(append(b"\0" * 4800))
        await s.send({"type": "input_audio_buffer.clear"})
        assert (await s.next())["type"] == "input_audio_buffer.cleared"
        await s.send(
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
            }
        )
        refused = await s.next()
        assert refused["error"]["code"] == "session_update_unsupported"  # the stream runs at 24 kHz PCM
        await s.send(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"prompt": "Norland"}}},
                },
            }
        )
        assert (await s.next())["session"]["audio"]["input"]["transcription"]["prompt"] == "Norland"


async def test_credentials(keyed_server: KeyedServer) -> None:
    for headers in ({"Authorization": "Bearer vxk_wrong"}, {}):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                f"{keyed_server.ws}/v1/realtime?intent=transcription", additional_headers=headers
            ):
                pass
        assert refused.value.response.status_code == 401
        body = json.loads(refused.value.response.body)["error"]
        assert body["code"] == "invalid_api_key" and body["message"]
    # browsers: the subprotocols the SDKs send
    offered = ["realtime", f"openai-insecure-api-key.{keyed_server.api_key}"]
    async with websockets.connect(
        f"{keyed_server.ws}/v1/realtime?intent=transcription", subprotocols=offered
    ) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        assert strict(await ws.recv())["type"] == "session.created"


async def test_a_bug_handling_one_event_is_an_error_event_not_a_dropped_session(
    keyed_server: KeyedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: RealtimeCodec, session: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(RealtimeCodec, "_update", broken)
    async with raw(keyed_server) as s:
        for _ in range(2):  # before any audio, then while the engine stream runs
            await s.send(update(transcription={"prompt": "x"}))
            error = await s.next("error")
            assert error["error"]["code"] == "internal_error" and error["error"]["type"] == "server_error"
            pcm = pcm_at(24000, "goforward.wav")
            for i in range(0, len(pcm), 9600):
                await s.send(append(pcm[i : i + 9600]))
            await s.send({"type": "input_audio_buffer.commit"})
            done = await s.next("conversation.item.input_audio_transcription.completed")
            assert corpus_wer([(REFERENCE[0], done["transcript"])]) <= 0.2
    assert sum("could not be handled" in r.message for r in caplog.records) == 2  # with the traceback


async def test_raw_binary_audio_fixes_the_session_as_an_append_does(keyed_server: KeyedServer) -> None:
    async with raw(keyed_server) as s:
        await s.ws.send(b"\0" * 4800)  # 100 ms of 24 kHz PCM in a binary frame: voxindex's extension
        await s.send(update(format={"type": "audio/pcmu"}))
        assert (await s.next("error"))["error"]["code"] == "session_update_unsupported"

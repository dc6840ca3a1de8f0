"""Property-based hostile input (hypothesis): whatever a client sends, the server answers with
documented messages and close codes, never raises out of a handler, and the streams of other
clients go on transcribing with their stored segments intact."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Server, start_server, stream_audio
from tests.conftest import PROSE, Synth, corpus_wer
from voxindex.api.protocol import parse_control, parse_options
from voxindex.audio import PcmDecoder
from voxindex.config import Settings
from voxindex.errors import InvalidRequestError
from voxindex.languages import ENGLISH
from voxindex.models.whisper import WhisperModel

MESSAGE_TYPES = {"ready", "speech_started", "interim", "final", "speech_ended", "closed", "error"}
ERROR_CODES = {  # docs/protocol.md
    "invalid_request",
    "protocol_violation",
    "bad_audio",
    "frame_too_large",
    "idle_timeout",
    "quota_exceeded",
    "over_capacity",
    "rate_limited",
}
CLOSE_CODES = {1000, 1009, 1013, 4400, 4408, 4413, 4429}  # never 1011: that is a server bug
GAP = np.zeros(9600, dtype=np.float32)


# ---------------- pure parsers: anything in, a value or InvalidRequestError out ----------------
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_parse_control_accepts_or_refuses_any_text(text: str) -> None:
    with contextlib.suppress(InvalidRequestError):
        assert parse_control(text) in ("flush", "keepalive", "close")


@given(
    st.dictionaries(
        st.sampled_from(["sample_rate", "encoding", "language", "vad", "x"]) | st.text(), st.text()
    )
)
def test_parse_options_accepts_or_refuses_any_query(params: dict[str, str]) -> None:
    try:
        options = parse_options(params, ENGLISH)
    except InvalidRequestError:
        return
    assert 8000 <= options.sample_rate <= 48000 and 100 <= options.endpointing_ms <= 10_000


@given(st.binary(min_size=0, max_size=4000), st.lists(st.integers(0, 4000), max_size=8))
def test_pcm_decoding_does_not_depend_on_how_frames_split_the_bytes(data: bytes, cuts: list[int]) -> None:
    whole = PcmDecoder("pcm_s16le", 16000).push(data)
    decoder = PcmDecoder("pcm_s16le", 16000)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    parts = [decoder.push(data[a:b]) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate([whole[:0], *parts]), whole)
    assert decoder.leftover == len(data) % 2


# ---------------- a live server under fire ----------------
@dataclass
class Errors(logging.Handler):
    """Collects ERROR records of the server's loggers (uvicorn reports handler exceptions there)."""

    records: list[logging.LogRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __hash__(self) -> int:
        return id(self)


@pytest.fixture(scope="module")
def target(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Errors]]:
    errors = Errors()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "voxindex", "uvicorn.asgi")]
    for logger in loggers:
        logger.addHandler(errors)
    settings = Settings(
        max_streams=12,
        idle_timeout_s=3.0,
        cache_dir=tmp_path_factory.mktemp("fuzz"),
        no_auth=True,
        ws_connects_per_ip="",
    )
    srv, uv, thread = start_server(settings, tiny)
    yield srv, errors
    uv.should_exit = True
    thread.join(timeout=30)
    for logger in loggers:
        logger.removeHandler(errors)


control = st.one_of(
    st.sampled_from(["flush", "keepalive", "close", "dance", ""]).map(lambda t: json.dumps({"type": t})),
    st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=20), max_size=4).map(
        json.dumps
    ),
    st.text(max_size=200),
    st.just("[" * 3000),
    st.integers(4097, 20_000).map(lambda n: json.dumps({"type": "keepalive", "pad": "x" * n})),
)
audio_frame = st.one_of(
    st.binary(max_size=3000),
    st.integers(65_537, 200_000).map(lambda n: b"\0" * n),  # over the frame limit
    st.just(b""),
)
query = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "sample_rate": st.sampled_from(["8000", "16000", "44100", "0", "abc", "1e9"]),
            "encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "opus", ""]),
            "interim_results": st.sampled_from(["true", "false", "maybe"]),
            "endpointing_ms": st.sampled_from(["100", "500", "-1", "99999999999999999999"]),
            "vad": st.sampled_from(["true", "false"]),
            "language": st.sampled_from(["en", "auto", "xx", "'; drop table", ""]),
            "junk": st.text(max_size=10),
        },
    ),
)
ending = st.sampled_from(["close", "vanish", "nothing"])


async def hostile_session(
    srv: Server, params: dict[str, str], frames: list[bytes | str], end: str
) -> tuple[list[dict[str, Any]], int | None]:
    url = f"{srv.ws}/v1/stream" + (f"?{urlencode(params)}" if params else "")
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None, open_timeout=20) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):  # the server may end it mid-way
            for frame in frames:
                await ws.send(frame)
            if end == "close":
                await ws.send(json.dumps({"type": "close"}))
        if end == "vanish":
            ws.transport.abort()
            return messages, None
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(30):  # "nothing": the idle timeout (3 s) ends it
                while True:
                    messages.append(json.loads(await ws.recv()))
        return messages, ws.close_code


@dataclass
class Victims:
    """Clients speaking real sentences, two at a time, while the fuzzing goes on."""

    srv: Server
    audio: list[tuple[str, np.ndarray]]
    heard: list[tuple[str, str]] = field(default_factory=list)
    streams: list[tuple[str, list[str]]] = field(default_factory=list)  # stream id, final texts
    codes: list[int | None] = field(default_factory=list)
    failure: BaseException | None = None

    def start(self) -> threading.Thread:
        async def speak(turns: list[tuple[str, np.ndarray]]) -> None:
            for sentence, audio in turns:
                session = await stream_audio(self.srv.ws, audio)
                self.heard.append((sentence, session.final_text))
                self.codes.append(session.close_code)
                ready = session.of("ready")[0]
                self.streams.append((ready["stream_id"], [m["text"] for m in session.of("final")]))

        async def both() -> None:
            await asyncio.gather(speak(self.audio[0::2]), speak(self.audio[1::2]))

        def run() -> None:
            try:
                asyncio.run(asyncio.wait_for(both(), 600))
            except BaseException as e:  # reported by the test
                self.failure = e

        thread = threading.Thread(target=run)
        thread.start()
        return thread


def test_hostile_clients_never_break_the_server_or_other_streams(
    target: tuple[Server, Errors], synth: Synth
) -> None:
    srv, errors = target
    index = srv.app.state.services.index
    sentences = PROSE[:6]  # read prose: tiny.en gets it right, so a harmed victim shows
    victims = Victims(srv, [(s, np.concatenate([GAP, synth(s), GAP])) for s in sentences])
    thread = victims.start()
    try:
        fuzz(srv)
    finally:
        thread.join(timeout=300)
    assert victims.failure is None and not thread.is_alive(), victims.failure
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert victims.codes == [1000] * len(sentences)
    assert corpus_wer(victims.heard) <= 0.15, victims.heard
    # every final a victim received is stored exactly as sent, and nothing of it went missing
    for stream_id, finals in victims.streams:
        assert [s.text for s in index.store.segments_of(stream_id)] == finals


def fuzz(srv: Server) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(query, st.lists(control | audio_frame, max_size=12), ending)
    def hostile(params: dict[str, str], frames: list[bytes | str], end: str) -> None:
        messages, code = asyncio.run(hostile_session(srv, params, frames, end))
        note = str(messages)[:2000]
        assert all(m["type"] in MESSAGE_TYPES for m in messages), note
        assert {m["code"] for m in messages if m["type"] == "error"} <= ERROR_CODES, note
        if end != "vanish":
            assert code in CLOSE_CODES, (code, note)
            assert messages, "every session is answered: ready, or an error saying why not"
            refused = messages[0]["type"] == "error"
            assert refused or messages[-1]["type"] == "closed" or code == 1009, note

    hostile()

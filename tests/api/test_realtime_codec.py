"""The Realtime codec alone: whatever a client sends is taken or refused with a code, and what it
renders parses with the SDK's own models (strict)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_realtime_ws import strict
from voxindex.api.realtime_codec import RealtimeCodec
from voxindex.api.realtime_session import RealtimeConfig, SessionError
from voxindex.engine.events import Configured, Error, Final, Interim, SpeechStarted
from voxindex.engine.types import Word
from voxindex.languages import ENGLISH


def codec() -> RealtimeCodec:
    return RealtimeCodec(RealtimeConfig(model="tiny.en", transcription=True), ENGLISH, 131072)


KNOWN = st.sampled_from(
    [
        "audio/pcm",
        "audio/pcmu",
        "server_vad",
        "semantic_vad",
        "transcription",
        "high",
        "near_field",
        24000,
        16000,
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | KNOWN,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["type", "session", "audio", "input", "format", "rate", "turn_detection", "transcription"]
)
EVENT_TYPES = st.sampled_from(
    [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "x",
    ]
)


FIELD = st.dictionaries(KEYS, JSON, max_size=4)
AUDIO_IN = st.fixed_dictionaries(
    {},
    optional={"format": FIELD | JSON, "transcription": FIELD | JSON, "turn_detection": FIELD | JSON},
)
SESSION = st.fixed_dictionaries(
    {},
    optional={
        "type": st.just("transcription") | JSON,
        "audio": st.fixed_dictionaries({"input": AUDIO_IN}) | JSON,
    },
) | st.fixed_dictionaries(
    {"audio": st.fixed_dictionaries({"input": st.fixed_dictionaries({"noise_reduction": FIELD | JSON})})}
)


@given(kind=EVENT_TYPES, body=st.dictionaries(KEYS, JSON, max_size=4), session=SESSION)
@settings(max_examples=1000, deadline=None, database=None)
def test_whatever_a_client_sends_is_taken_or_refused_with_a_code(
    kind: str, body: dict[str, Any], session: dict[str, Any]
) -> None:
    codec_ = codec()
    for event in ({**body, "type": kind}, {"type": "session.update", "session": session}):
        try:
            codec_.control(json.dumps(event))
        except SessionError as e:
            rendered = codec_.error(Error(e.code, e.message, e.param, e.event_id))
            strict(json.dumps(rendered))
            assert e.code and e.message
    strict(json.dumps(codec_.render(Configured())[0]))  # whatever was taken still echoes as the SDK's session


def test_an_error_that_ends_the_stream_fails_the_item_being_said() -> None:
    c = codec()
    [started] = c.render(SpeechStarted(1.0))
    c.render(Interim(0, "Go forward", 1.0, 1.6, "Go forward"))
    c.render(Final(0, "Go forward 10 meters.", 1.0, 2.2, [Word("Go", 1.0, 1.2, 0.9)]))
    failed, error = c.render(Error("store_unavailable", "the disk is full"))
    for event in (started, failed, error):
        strict(json.dumps(event))
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert failed["item_id"] == started["item_id"] and failed["error"]["code"] == "store_unavailable"
    assert error["error"] == {**error["error"], "type": "server_error", "code": "store_unavailable"}
    assert [e["type"] for e in c.render(Error("bad_audio", "x"))] == ["error"]  # no item: nothing failed


def test_the_servers_own_troubles_are_server_errors_and_the_clients_are_invalid_requests() -> None:
    c = codec()
    server, client = "server_error", "invalid_request_error"
    for code, kind in [("server_restarting", server), ("over_capacity", server), ("idle_timeout", client)]:
        [error] = c.render(Error(code, "why"))
        strict(json.dumps(error))
        assert (error["error"]["type"], error["error"]["code"], error["error"]["message"]) == (
            kind,
            code,
            "why",
        )

"""A Realtime transcription session's configuration: what ``session.update`` may say, what the
session echoes (checked against the SDK's own model), and what it asks of the engine."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequest

from voxindex.api.realtime_session import (
    EAGERNESS,
    RealtimeConfig,
    SemanticVad,
    ServerVad,
    SessionError,
    fixed_unchanged,
    updated,
)
from voxindex.languages import ENGLISH

MULTI = frozenset({"en", "de", "fr"})
BASE = RealtimeConfig(model="tiny.en", transcription=True)


def update(
    config: RealtimeConfig = BASE, languages: frozenset[str] = ENGLISH, **audio_in: Any
) -> RealtimeConfig:
    return updated(config, {"type": "transcription", "audio": {"input": audio_in}}, languages)


def test_the_defaults_are_openais_and_the_echo_is_the_sdks_shape() -> None:
    session = BASE.session()
    RealtimeTranscriptionSessionCreateRequest.model_validate(session, strict=True)
    audio_in = session["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
    }  # fmt: skip
    options = BASE.stream_options(ENGLISH)
    assert (options.sample_rate, options.encoding, options.endpointing_ms, options.turns) == (
        24000, "pcm_s16le", 500, None,
    )  # fmt: skip


def test_an_update_changes_only_what_it_names() -> None:
    c = update(turn_detection={"type": "server_vad", "silence_duration_ms": 800, "threshold": 0.7})
    c = update(c, transcription={"prompt": "Talk of Dashwood and Norland."})
    assert c.turn_detection == ServerVad(threshold=0.7, prefix_padding_ms=300, silence_duration_ms=800)
    assert c.prompt == "Talk of Dashwood and Norland."
    options = c.stream_options(ENGLISH)
    assert (options.endpointing_ms, options.vad_threshold, options.context) == (800, 0.7, c.prompt)
    assert update(c, turn_detection=None).turn_detection is None  # null: the client commits
    assert update(c, turn_detection=None).stream_options(ENGLISH).endpointing_ms == 10_000


@pytest.mark.parametrize(
    ("eagerness", "threshold", "timeout"), [("low", 0.85, 8.0), ("auto", 0.7, 4.0), ("high", 0.5, 2.0)]
)
def test_semantic_vad_is_the_turn_detector_and_eagerness_its_thresholds(
    eagerness: str, threshold: float, timeout: float
) -> None:
    c = update(turn_detection={"type": "semantic_vad", "eagerness": eagerness})
    assert c.turn_detection == SemanticVad(eagerness)
    turns = c.stream_options(ENGLISH).turns
    assert turns == EAGERNESS[eagerness]
    assert turns is not None and (turns.eot_threshold, turns.eot_timeout_s) == (threshold, timeout)


def test_formats_and_rates() -> None:
    pcm16k = update(format={"type": "audio/pcm", "rate": 16000})
    assert pcm16k.stream_options(ENGLISH).sample_rate == 16000
    echo = RealtimeTranscriptionSessionCreateRequest.model_validate(pcm16k.session(), strict=True)
    assert echo.audio and echo.audio.input and echo.audio.input.format
    assert echo.audio.input.format.model_extra == {"sample_rate": 16000}  # not OpenAI's rate: ours
    ulaw = update(format={"type": "audio/pcmu"}).stream_options(ENGLISH)
    assert (ulaw.encoding, ulaw.sample_rate) == ("pcm_mulaw", 8000)
    RealtimeTranscriptionSessionCreateRequest.model_validate(
        update(format={"type": "audio/pcma"}).session(), strict=True
    )


def test_languages_and_logprobs() -> None:
    assert update(transcription={"language": "en"}).stream_options(ENGLISH).language is None  # English-only
    assert update(transcription={"language": "de"}, languages=MULTI).stream_options(MULTI).language == "de"
    assert BASE.stream_options(MULTI).language == "auto"  # none given: detected
    with_logprobs = updated(
        BASE, {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"]}, ENGLISH
    )
    assert with_logprobs.logprobs and with_logprobs.session()["include"] == [
        "item.input_audio_transcription.logprobs"
    ]


IN = "session.audio.input"
TD = f"{IN}.turn_detection"


def said(**audio_in: Any) -> dict[str, Any]:
    return {"audio": {"input": audio_in}}


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"type": "realtime"}, "invalid_value", "session.type"),
        ({"type": "transcription", "tools": []}, "unknown_parameter", "session.tools"),
        (said(format={"type": "audio/opus"}), "invalid_value", f"{IN}.format.type"),
        (said(format={"type": "audio/pcm", "rate": 96000}), "invalid_value", f"{IN}.format.rate"),
        (said(turn_detection={"type": "semantic_vad", "eagerness": "x"}), "invalid_value", f"{TD}.eagerness"),
        (said(turn_detection={"type": "server_vad", "threshold": 2}), "invalid_value", f"{TD}.threshold"),
        (said(turn_detection={"type": "push_to_talk"}), "invalid_value", f"{TD}.type"),
        (said(transcription={"language": "de"}), "unsupported_language", f"{IN}.transcription.language"),
        (said(transcription={"prompt": 7}), "invalid_value", f"{IN}.transcription.prompt"),
        (said(transcription={"keywords": "Norland"}), "invalid_value", f"{IN}.transcription.keywords"),
        (said(noise_reduction={"type": "studio"}), "invalid_value", f"{IN}.noise_reduction.type"),
        ({"audio": {"output": {"voice": "alloy"}}}, "invalid_value", "session.audio.output"),
        ({"include": ["item.input_audio_transcription.everything"]}, "invalid_value", "session.include"),
        ("transcription", "invalid_type", "session"),
    ],
)  # fmt: skip
def test_a_bad_update_names_its_field(session: Any, code: str, param: str) -> None:
    with pytest.raises(SessionError) as refused:
        updated(BASE, session, ENGLISH)
    assert (refused.value.code, refused.value.param) == (code, param)
    assert refused.value.message


def test_a_session_is_a_transcription_session_only_once_said() -> None:
    fresh = RealtimeConfig(model="tiny.en")  # no ?intent=transcription
    with pytest.raises(SessionError):
        updated(fresh, {"audio": {}}, ENGLISH)  # no type: not yet a transcription session
    assert updated(fresh, {"type": "transcription"}, ENGLISH).transcription


def test_what_the_engine_runs_with_stays_once_audio_flows() -> None:
    fixed_unchanged(BASE, update(transcription={"prompt": "new words"}))
    fixed_unchanged(
        update(turn_detection={"type": "semantic_vad"}),
        update(turn_detection={"type": "semantic_vad", "eagerness": "low"}),
    )
    for change in (
        {"format": {"type": "audio/pcmu"}},
        {"turn_detection": None},
        {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}},
    ):
        with pytest.raises(SessionError) as refused:
            fixed_unchanged(BASE, update(**change))
        assert refused.value.code == "session_update_unsupported"

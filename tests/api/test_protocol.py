from __future__ import annotations

import pytest

from voxindex.api.protocol import parse_control, parse_options, to_wire
from voxindex.engine.events import Closed, Error, Final, Interim, Ready
from voxindex.engine.types import Word
from voxindex.errors import InvalidRequestError
from voxindex.languages import ENGLISH

MULTILINGUAL = frozenset({"en", "de", "fr"})


def test_defaults() -> None:
    o = parse_options({}, ENGLISH)
    assert (o.sample_rate, o.encoding, o.interim_results, o.endpointing_ms, o.vad) == (
        16000,
        "pcm_s16le",
        True,
        500,
        True,
    )


def test_values_are_parsed() -> None:
    o = parse_options(
        {
            "sample_rate": "8000",
            "encoding": "pcm_f32le",
            "interim_results": "false",
            "endpointing_ms": "300",
            "vad": "0",
        },
        MULTILINGUAL,
    )
    assert (o.sample_rate, o.encoding, o.interim_results, o.endpointing_ms, o.vad) == (
        8000,
        "pcm_f32le",
        False,
        300,
        False,
    )
    assert parse_options({"language": "de"}, MULTILINGUAL).language == "de"
    assert parse_options({"language": "auto"}, MULTILINGUAL).language == "auto"


@pytest.mark.parametrize(
    "params",
    [
        {"sample_rate": "7999"},
        {"sample_rate": "48001"},
        {"sample_rate": "1e9"},
        {"endpointing_ms": "50"},
        {"vad": "perhaps"},
    ],
)
def test_out_of_range_values_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(InvalidRequestError):
        parse_options(params, ENGLISH)


def test_control_messages() -> None:
    assert parse_control('{"type": "flush"}') == "flush"
    for bad in ["", "null", "[]", '{"type": 3}', '{"type": "explode"}', "{" * 5000]:
        with pytest.raises(InvalidRequestError):
            parse_control(bad)


def test_events_to_wire() -> None:
    assert to_wire(Ready("s1", "tiny.en", 16000)) == {
        "type": "ready",
        "stream_id": "s1",
        "model": "tiny.en",
        "sample_rate": 16000,
    }
    assert to_wire(Interim(2, "a b", 1.0, 2.0, "a"))["stable_text"] == "a"
    final = to_wire(Final(0, "hi", 0.1, 0.4, [Word("hi", 0.1, 0.4, 0.9)]))
    assert final["words"] == [{"word": "hi", "start": 0.1, "end": 0.4, "confidence": 0.9}]
    assert "language" not in final
    assert to_wire(Closed(3.5, 2)) == {"type": "closed", "duration": 3.5, "segments": 2}
    assert to_wire(Error("bad_audio", "x")) == {"type": "error", "code": "bad_audio", "message": "x"}


def test_deeply_nested_control_messages_are_refused_before_parsing() -> None:
    import pytest

    from voxindex.api.protocol import ProtocolViolation, parse_control

    with pytest.raises(ProtocolViolation, match="nests too deeply"):
        parse_control("[" * 3000)  # json.loads would hit the recursion limit
    assert parse_control('{"type": "flush"}') == "flush"

"""The native protocol's wire format: query parameters in, JSON events out. Pure functions.

See docs/protocol.md for the session shape and docs/errors.md for codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from voxindex.audio import PCM_ENCODINGS
from voxindex.engine import prompting
from voxindex.engine.events import (
    Closed,
    Error,
    Event,
    Final,
    Interim,
    Ready,
    SpeechEnded,
    SpeechStarted,
    TurnEvent,
    TurnInfo,
)
from voxindex.engine.prompting import PromptUpdate
from voxindex.engine.types import StreamOptions, TurnOptions, word_dict
from voxindex.errors import CapacityError, InvalidRequestError, QuotaError, VoxError
from voxindex.languages import ENGLISH, check_language, check_task


class ProtocolViolation(InvalidRequestError):
    """A text frame that is not a JSON control message: the client does not speak the protocol."""

    code = "protocol_violation"


def close_code(error: VoxError) -> int:
    """The close code that answers a refusal at the handshake."""
    from voxindex.api.auth import AuthError, ForbiddenError
    from voxindex.api.limits import RateLimitedError

    codes: list[tuple[type[VoxError], int]] = [
        (AuthError, CLOSE_UNAUTHENTICATED),
        (ForbiddenError, CLOSE_FORBIDDEN),
        (RateLimitedError, CLOSE_RATE_LIMITED),
        (QuotaError, CLOSE_RATE_LIMITED),
        (CapacityError, CLOSE_TRY_AGAIN),
        (InvalidRequestError, CLOSE_PROTOCOL),
    ]
    return next((code for kind, code in codes if isinstance(error, kind)), CLOSE_INTERNAL)


MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
ENDPOINTING_MS = (100, 10_000)  # the silence that may end an utterance
ENCODINGS = tuple(PCM_ENCODINGS)
CONTROL_TYPES = ("flush", "keepalive", "close", "configure", "context")
MAX_NESTING = 32  # brackets in one control message: never a RecursionError in the parser

# WebSocket close codes, as documented in docs/protocol.md: 4xxx mirror the HTTP statuses
CLOSE_NORMAL = 1000
CLOSE_INTERNAL = 1011
CLOSE_SERVICE_RESTART = 1012  # graceful shutdown: finals sent, reconnect elsewhere
CLOSE_TRY_AGAIN = 1013  # the server is at capacity
CLOSE_PROTOCOL = 4400  # a bad parameter or a malformed message
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403  # scope, tenant or Origin
CLOSE_IDLE = 4408
CLOSE_FRAME_TOO_LARGE = 4413
CLOSE_RATE_LIMITED = 4429  # a rate or quota limit
SUBPROTOCOL = "voxindex"  # echoed when offered; a token may ride along as "bearer.<token>"


@dataclass(frozen=True)
class Configure:
    """A mid-stream change of key terms, turn thresholds and context; ``error``: refused
    (nothing changes, the client is told)."""

    keyterms: tuple[str, ...] | None = None
    turns: TurnOptions | None = None
    error: str | None = None
    context: str | None = None  # a new conversation item priming what follows


@dataclass(frozen=True)
class Append:
    """Audio carried inside a text message (OpenAI Realtime's base64 appends): raw bytes in the
    stream's encoding, taken exactly as a binary frame would be."""

    data: bytes


Control = Literal["flush", "keepalive", "close"] | PromptUpdate | Configure | Append


def parse_options(params: Mapping[str, str], languages: frozenset[str]) -> StreamOptions:
    """Validate the query string of ``GET /v1/stream``; raise InvalidRequestError naming the bad
    field. ``languages``: what the model reads (``WhisperModel.languages``)."""
    known = {
        "sample_rate", "encoding", "language", "interim_results", "endpointing_ms", "vad", "diarize",
        "task", "keyterms", "context", "record", "turns", "eot_threshold", "eager_eot_threshold",
        "eot_timeout_ms",
    }  # fmt: skip
    unknown = sorted(set(params) - known - {"access_token"})
    if unknown:
        raise InvalidRequestError(f"unknown query parameter(s): {', '.join(unknown)}")
    multilingual = languages != ENGLISH
    rate = _int(params, "sample_rate", 16000)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidRequestError(f"sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate}")
    encoding = params.get("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise InvalidRequestError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    endpointing = _int(params, "endpointing_ms", 500)
    if not ENDPOINTING_MS[0] <= endpointing <= ENDPOINTING_MS[1]:
        raise InvalidRequestError(f"endpointing_ms must be 100..10000, got {endpointing}")
    language = params.get("language") or None
    if language is not None:
        if not multilingual and language not in ("en", "auto"):
            raise InvalidRequestError(
                f"this server's model is English-only; language={language!r} unsupported"
            )
        if not (language == "auto" or (language.isalpha() and 2 <= len(language) <= 3)):
            raise InvalidRequestError(f"language must be a code like 'en' or 'auto', got {language!r}")
        language = check_language(language, languages)
    return StreamOptions(
        sample_rate=rate,
        encoding=encoding,
        language=None if language in (None, "auto") and not multilingual else language,
        interim_results=_bool(params, "interim_results", True),
        endpointing_ms=endpointing,
        vad=_bool(params, "vad", True),
        diarize=_bool(params, "diarize", False),
        task=check_task(params.get("task", "transcribe"), languages),
        keyterms=prompting.keyterms(query_list(params, "keyterms")),
        context=prompting.context_item(params.get("context", "")),
        record=_bool(params, "record", False),
        turns=turn_options(params) if _bool(params, "turns", False) else None,
    )


EOT_THRESHOLDS = (0.5, 1.0)
EAGER_THRESHOLDS = (0.3, 0.9)
EOT_TIMEOUTS_MS = (500, 60_000)


def turn_options(params: Mapping[str, Any], base: TurnOptions | None = None) -> TurnOptions:
    """Turn thresholds (Deepgram Flux's names and ranges), over ``base``: ``eot_threshold``
    0.5..1.0 (default 0.7; 1.0: only ``eot_timeout_ms`` or a forced end ends a turn),
    ``eager_eot_threshold`` 0.3..0.9 and at most ``eot_threshold`` (off unless given),
    ``eot_timeout_ms`` 500..60000 (default 5000). InvalidRequestError names a bad one."""
    base = base or TurnOptions()
    eot = _number(params, "eot_threshold", EOT_THRESHOLDS, base.eot_threshold)
    eager = _number(params, "eager_eot_threshold", EAGER_THRESHOLDS, base.eager_threshold)
    timeout = _number(params, "eot_timeout_ms", EOT_TIMEOUTS_MS, base.eot_timeout_s * 1000)
    if eager is not None and eot is not None and eager > eot:
        raise InvalidRequestError(f"eager_eot_threshold ({eager:g}) must not exceed eot_threshold ({eot:g})")
    assert eot is not None and timeout is not None
    return TurnOptions(eot_threshold=eot, eager_threshold=eager, eot_timeout_s=timeout / 1000)


def _number(
    params: Mapping[str, Any], name: str, bounds: tuple[float, float], default: float | None
) -> float | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{name} must be a number, got {str(raw)[:20]!r}") from None
    if isinstance(raw, bool) or not bounds[0] <= value <= bounds[1]:
        raise InvalidRequestError(f"{name} must be {bounds[0]:g}..{bounds[1]:g}, got {str(raw)[:20]}")
    return value


def query_list(params: Mapping[str, str], name: str) -> list[str]:
    """Every value of a repeated query parameter (``?keyterms=a&keyterms=b``)."""
    getlist = getattr(params, "getlist", None)
    if getlist is not None:
        return [str(v) for v in getlist(name)]
    return [params[name]] if name in params else []


def int_param(params: Mapping[str, str], name: str) -> int | None:
    """An integer query parameter, None when absent; InvalidRequestError when not an integer."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequestError(f"{name} must be an integer, got {raw[:20]!r}") from None


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    value = int_param(params, name)
    return default if value is None else value


def _bool(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise InvalidRequestError(f"{name} must be true or false, got {raw!r}")


def subprotocol_token(offered: list[str]) -> str | None:
    """The token carried in a ``bearer.<token>`` subprotocol (browsers cannot set headers)."""
    for item in offered:
        if item.startswith("bearer."):
            return item[len("bearer.") :]
    return None


def message_object(text: str) -> dict[str, Any]:
    """A JSON text frame as an object with a string ``type``; ProtocolViolation otherwise
    (every protocol's control messages are such objects)."""
    if text.count("[") + text.count("{") > MAX_NESTING:  # control messages are flat
        raise ProtocolViolation("control messages are flat JSON objects; this one nests too deeply")
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolViolation(
            "text frames must be JSON control messages; audio goes in binary frames"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolViolation('control messages are JSON objects with a "type" field')
    return message


def message_type(text: str) -> str:
    return str(message_object(text)["type"])


TURN_FIELDS = ("eot_threshold", "eager_eot_threshold", "eot_timeout_ms")


def parse_control(text: str, turns: TurnOptions | None = None) -> Control:
    """The native control message in a text frame. ProtocolViolation for a frame that is not a
    JSON object with a string ``type``; InvalidRequestError for a type this server does not know
    or a ``configure`` / ``context`` message with bad fields. ``turns``: a turn-taking stream's
    thresholds, which ``configure`` may change."""
    message = message_object(text)
    kind = str(message["type"])
    if kind == "configure":
        changes_turns = any(name in message for name in TURN_FIELDS)
        if "keyterms" not in message and not changes_turns:
            raise InvalidRequestError('configure takes "keyterms": a list of strings')
        if changes_turns and turns is None:
            raise InvalidRequestError("turn thresholds apply to streams opened with turns=true")
        terms = message.get("keyterms")
        if terms is not None and not isinstance(terms, list):
            raise InvalidRequestError("keyterms must be a list of strings")
        keyterms = prompting.keyterms(terms) if terms is not None else None
        if not changes_turns:
            return PromptUpdate(keyterms=keyterms)
        return Configure(keyterms, turn_options(message, turns))
    if kind == "context":
        return PromptUpdate(context=prompting.context_item(message.get("text")))
    if kind not in CONTROL_TYPES:
        raise InvalidRequestError(
            f"unknown message type {kind[:40]!r}; expected one of {', '.join(CONTROL_TYPES)}"
        )
    return kind  # type: ignore[return-value]


def to_wire(event: Event) -> dict[str, Any]:
    """Internal event → native JSON message."""
    if isinstance(event, Ready):
        return {"type": "ready", **asdict(event)}
    if isinstance(event, SpeechStarted):
        return {"type": "speech_started", "time": event.time}
    if isinstance(event, Interim):
        return {"type": "interim", **asdict(event)}
    if isinstance(event, Final):
        return {
            "type": "final",
            "segment_id": event.segment_id,
            "text": event.text,
            "start": event.start,
            "end": event.end,
            "words": [word_dict(w) for w in event.words],
            **({"language": event.language} if event.language else {}),
            **({"speaker": event.speaker} if event.speaker is not None else {}),
        }
    if isinstance(event, SpeechEnded):
        return {"type": "speech_ended", "time": event.time}
    if isinstance(event, Closed):
        return {"type": "closed", "duration": event.duration, "segments": event.segments}
    if isinstance(event, Error):
        return {"type": "error", "code": event.code, "message": event.message}
    raise TypeError(f"{type(event).__name__} has no single native message")


TURN_TYPES = {
    TurnEvent.STARTED: "turn_started",
    TurnEvent.EAGER_END: "eager_end_of_turn",
    TurnEvent.RESUMED: "turn_resumed",
    TurnEvent.END: "end_of_turn",
}


def turn_message(turn: TurnInfo) -> dict[str, Any] | None:
    """A turn event as the native message (docs/protocol.md, "Turns"); None for an update,
    which the native protocol's interims already tell."""
    kind = TURN_TYPES.get(turn.event)
    if kind is None:
        return None
    return {
        "type": kind,
        "turn_index": turn.index,
        "start": turn.start,
        "end": turn.end,
        "transcript": turn.text,
        "words": [word_dict(w) for w in turn.words],
        "end_of_turn_probability": turn.end_of_turn_probability,
    }

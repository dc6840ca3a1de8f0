"""An OpenAI Realtime transcription session's configuration: ``session.update`` in, the
session object out (``session.created`` / ``session.updated``), and the stream options it asks
of the engine. Pure functions over https://platform.openai.com/docs/api-reference/realtime
(the GA shape: ``session.type = "transcription"``, ``session.audio.input.*``, ``include``).

A field left out of an update keeps its value; ``turn_detection: null`` means the client
commits. ``server_vad`` is silence alone (``silence_duration_ms`` ends speech, ``threshold`` is
the VAD's, ``prefix_padding_ms`` moves ``audio_start_ms`` back); ``semantic_vad`` is the turn
detector (engine/turns/), its eagerness a pair of turn thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from voxindex.api.protocol import ENDPOINTING_MS
from voxindex.engine import prompting
from voxindex.engine.types import StreamOptions, TurnOptions
from voxindex.errors import InvalidRequestError
from voxindex.languages import ENGLISH, check_language

FORMATS = {"audio/pcm": "pcm_s16le", "audio/pcmu": "pcm_mulaw", "audio/pcma": "pcm_alaw"}
LOGPROBS = "item.input_audio_transcription.logprobs"
# semantic_vad's eagerness: how sure the turn detector must be, and the longest pause it waits
# (OpenAI documents 8, 4 and 2 s as the longest waits of low, medium and high)
EAGERNESS = {
    "low": TurnOptions(eot_threshold=0.85, eot_timeout_s=8.0),
    "medium": TurnOptions(eot_threshold=0.7, eot_timeout_s=4.0),
    "high": TurnOptions(eot_threshold=0.5, eot_timeout_s=2.0),
}
EAGERNESS["auto"] = EAGERNESS["medium"]
SILENCE_MS = ENDPOINTING_MS  # server_vad's silence_duration_ms, as /v1/stream's endpointing_ms


class SessionError(InvalidRequestError):
    """A client event the session refuses: the Realtime ``error`` event's code and param."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param
        self.event_id: str | None = None  # the client event it answers, once known


@dataclass(frozen=True)
class ServerVad:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class SemanticVad:
    eagerness: str = "auto"


TurnDetection = ServerVad | SemanticVad | None


@dataclass(frozen=True)
class RealtimeConfig:
    model: str  # what the client calls the transcription model (the server's model answers)
    transcription: bool = False  # a transcription session: ?intent=transcription or said so
    format: str = "audio/pcm"
    rate: int = 24_000
    language: str | None = None
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    turn_detection: TurnDetection = ServerVad()
    logprobs: bool = False
    noise_reduction: dict[str, Any] | None = None  # accepted and echoed; no filter runs

    def stream_options(self, languages: frozenset[str]) -> StreamOptions:
        """What the engine runs for this session (``languages``: the model's)."""
        vad = self.turn_detection
        english = languages == ENGLISH  # an English-only model takes no language
        return StreamOptions(
            sample_rate=self.rate,
            encoding=FORMATS[self.format],
            language=None if english else check_language(self.language or "auto", languages),
            interim_results=True,
            # a client that commits decides where items end; ten seconds of silence is a pause
            endpointing_ms=vad.silence_duration_ms if isinstance(vad, ServerVad) else SILENCE_MS[1],
            vad_threshold=vad.threshold if isinstance(vad, ServerVad) else 0.5,
            keyterms=self.keywords,
            context=self.prompt,
            turns=EAGERNESS[vad.eagerness] if isinstance(vad, SemanticVad) else None,
        )

    def session(self) -> dict[str, Any]:
        """The session object (``RealtimeTranscriptionSessionCreateRequest``)."""
        fmt: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":  # the SDK's models take only 24000 as ``rate``: another
            fmt["rate" if self.rate == 24_000 else "sample_rate"] = self.rate  # is an extension
        transcription: dict[str, Any] = {
            "model": self.model,
            "language": self.language,
            "prompt": self.prompt,
        }
        if self.keywords:
            transcription["keywords"] = list(self.keywords)
        vad = self.turn_detection
        turn: dict[str, Any] | None = None
        if isinstance(vad, ServerVad):
            turn = {"type": "server_vad", **vars(vad)}
        elif isinstance(vad, SemanticVad):
            turn = {"type": "semantic_vad", "eagerness": vad.eagerness}
        audio_in = {
            "format": fmt,
            "transcription": transcription,
            "turn_detection": turn,
            "noise_reduction": self.noise_reduction,
        }
        return {
            "type": "transcription",
            "audio": {"input": audio_in},
            "include": [LOGPROBS] if self.logprobs else [],
        }


def updated(config: RealtimeConfig, session: object, languages: frozenset[str]) -> RealtimeConfig:
    """``config`` with a ``session.update``'s ``session`` applied (fields left out keep their
    values); SessionError names the first bad field."""
    s = _object(session, "session", {"type", "audio", "include", "model", "object", "id", "expires_at"})
    kind = s.get("type", "transcription" if config.transcription else None)
    if kind != "transcription":
        raise SessionError(
            f"voxindex serves transcription sessions only (session.type 'transcription'), got {kind!r:.30}",
            param="session.type",
        )
    config = replace(config, transcription=True)
    if "include" in s:
        include = s["include"] or []
        if not isinstance(include, list) or any(i != LOGPROBS for i in include):
            raise SessionError(f"session.include takes only {LOGPROBS!r}", param="session.include")
        config = replace(config, logprobs=LOGPROBS in include)
    audio = _object(s.get("audio") or {}, "session.audio", {"input", "output"})
    if audio.get("output") is not None:
        raise SessionError("a transcription session has no audio output", param="session.audio.output")
    keys = {"format", "transcription", "turn_detection", "noise_reduction"}
    audio_in = _object(audio.get("input") or {}, "session.audio.input", keys)
    if "format" in audio_in:
        config = _format(config, audio_in["format"])
    if "transcription" in audio_in:
        config = _transcription(config, audio_in["transcription"], languages)
    if "turn_detection" in audio_in:
        config = replace(config, turn_detection=_turn_detection(audio_in["turn_detection"]))
    if "noise_reduction" in audio_in:
        config = replace(config, noise_reduction=_noise_reduction(audio_in["noise_reduction"]))
    return config


def _noise_reduction(raw: object) -> dict[str, Any] | None:
    """Accepted and echoed, for clients that always send it; no filter runs."""
    param = "session.audio.input.noise_reduction"
    if raw is None:
        return None
    nr = _object(raw, param, {"type", "strength"})
    if nr.get("type") not in (None, "near_field", "far_field"):
        raise SessionError(f"{param}.type must be near_field or far_field", param=f"{param}.type")
    _number(nr, "strength", 0.0, 1.0, 1.0, param)
    return dict(nr)


def fixed_unchanged(old: RealtimeConfig, new: RealtimeConfig) -> None:
    """What the engine stream was opened with stays: refuse an update that changes it."""
    base = "session.audio.input."
    fixed: list[tuple[object, object, str]] = [
        ((old.format, old.rate), (new.format, new.rate), "format"),
        (old.language, new.language, "transcription.language"),
        (type(old.turn_detection), type(new.turn_detection), "turn_detection.type"),
    ]
    if isinstance(old.turn_detection, ServerVad) and isinstance(new.turn_detection, ServerVad):
        a, b = old.turn_detection, new.turn_detection
        fixed.append(
            ((a.threshold, a.silence_duration_ms), (b.threshold, b.silence_duration_ms), "turn_detection")
        )
    for was, now, name in fixed:
        if was != now:
            raise SessionError(
                f"{base}{name} cannot change once audio has been appended; open a new session for it",
                "session_update_unsupported",
                base + name,
            )


def _format(config: RealtimeConfig, raw: object) -> RealtimeConfig:
    param = "session.audio.input.format"
    fmt = _object(raw, param, {"type", "rate"})
    kind = fmt.get("type", "audio/pcm")
    if not isinstance(kind, str) or kind not in FORMATS:
        raise SessionError(
            f"{param}.type must be one of {', '.join(FORMATS)}, got {str(kind)[:30]!r}", param=f"{param}.type"
        )
    if kind != "audio/pcm":  # G.711 is 8 kHz
        if fmt.get("rate", 8000) != 8000:
            raise SessionError(f"{kind} is 8000 Hz audio", param=f"{param}.rate")
        return replace(config, format=kind, rate=8000)
    rate = fmt.get("rate", 24_000)
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 48_000:
        raise SessionError(
            f"{param}.rate must be 8000..48000 Hz (24000 is OpenAI's), got {str(rate)[:20]}",
            param=f"{param}.rate",
        )
    return replace(config, format=kind, rate=rate)


def _transcription(config: RealtimeConfig, raw: object, languages: frozenset[str]) -> RealtimeConfig:
    param = "session.audio.input.transcription"
    if raw is None:
        raise SessionError("a transcription session transcribes: transcription cannot be null", param=param)
    t = _object(raw, param, {"model", "language", "languages", "prompt", "keywords", "delay"})
    model = t.get("model", config.model)
    if not isinstance(model, str):
        raise SessionError(f"{param}.model must be a string", param=f"{param}.model")
    language = t.get("language", config.language)
    if isinstance(t.get("languages"), list) and len(t["languages"]) == 1:
        language = t["languages"][0]
    if language is not None:
        if not isinstance(language, str):
            raise SessionError(f"{param}.language must be a string", param=f"{param}.language")
        try:
            check_language(language, languages)
        except InvalidRequestError as e:
            raise SessionError(e.message, e.code, f"{param}.language") from None
    prompt = t.get("prompt", config.prompt)
    try:
        prompt = prompting.context_item(prompt if prompt is not None else "", f"{param}.prompt")
    except InvalidRequestError as e:
        raise SessionError(e.message, param=f"{param}.prompt") from None
    try:
        words = t.get("keywords") or []
        if not isinstance(words, list):
            raise InvalidRequestError(f"{param}.keywords must be a list of strings")
        keywords = prompting.keyterms(words, f"{param}.keywords") if "keywords" in t else config.keywords
    except InvalidRequestError as e:
        raise SessionError(e.message, param=f"{param}.keywords") from None
    return replace(config, model=model, language=language, prompt=prompt, keywords=keywords)


def _turn_detection(raw: object) -> TurnDetection:
    param = "session.audio.input.turn_detection"
    if raw is None:
        return None
    keys = {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "eagerness",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
    }
    t = _object(raw, param, keys)
    kind = t.get("type", "server_vad")
    if kind == "semantic_vad":
        eagerness = t.get("eagerness") or "auto"
        if not isinstance(eagerness, str) or eagerness not in EAGERNESS:
            raise SessionError(
                f"{param}.eagerness must be one of low, medium, high, auto, got {str(eagerness)[:20]!r}",
                param=f"{param}.eagerness",
            )
        return SemanticVad(eagerness)
    if kind != "server_vad":
        raise SessionError(
            f"{param}.type must be server_vad or semantic_vad (or null), got {str(kind)[:30]!r}",
            param=f"{param}.type",
        )
    vad = ServerVad()
    threshold = _number(t, "threshold", 0.0, 1.0, vad.threshold, param)
    padding = _number(t, "prefix_padding_ms", 0, 10_000, vad.prefix_padding_ms, param)
    silence = _number(t, "silence_duration_ms", *SILENCE_MS, vad.silence_duration_ms, param)
    return ServerVad(threshold, int(padding), int(silence))


def _number(t: dict[str, Any], name: str, low: float, high: float, default: float, param: str) -> float:
    value = t.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SessionError(
            f"{param}.{name} must be a number {low:g}..{high:g}, got {str(value)[:20]}",
            param=f"{param}.{name}",
        )
    return float(value)


def _object(raw: object, param: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SessionError(f"{param} must be an object", "invalid_type", param)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SessionError(
            f"unknown parameter {param}.{unknown[0][:40]}", "unknown_parameter", f"{param}.{unknown[0][:40]}"
        )
    return raw

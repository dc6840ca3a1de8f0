"""``GET /v1/listen``: Deepgram's live-streaming protocol, so Deepgram clients work unchanged.

Query parameters, auth (``Authorization: Token <key>``, ``Bearer``, or the browser subprotocols
``["token", "<key>"]``), client messages (``KeepAlive``, ``Finalize``, ``CloseStream``) and
server messages (``Results``, ``SpeechStarted``, ``UtteranceEnd``, ``Metadata``) follow
https://developers.deepgram.com/reference/speech-to-text/listen-streaming. A refused handshake
is an HTTP error response as Deepgram gives (401, 403, 400, 429, 503, with ``err_code`` and
``err_msg``). ``diarize=true`` labels every final word with ``speaker`` and
``speaker_confidence``, as Deepgram does. Parameters voxindex has no use for (``model``,
``smart_format``, …) are accepted and ignored. See docs/compatibility.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from voxindex import __version__
from voxindex.api.auth import Authenticator, AuthError, ForbiddenError
from voxindex.api.limits import ConnectLimits, RateLimitedError
from voxindex.api.protocol import Control, int_param, message_type, query_list
from voxindex.api.services import Services
from voxindex.api.session import authorize, opened, ready, refused, serve_stream
from voxindex.audio import PcmDecoder
from voxindex.config import Settings
from voxindex.engine import prompting
from voxindex.engine.events import Closed, Error, Event, Final, Interim, SpeechEnded, SpeechStarted
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.stream import Stream
from voxindex.engine.types import StreamOptions
from voxindex.errors import CapacityError, InvalidRequestError, QuotaError, VoxError
from voxindex.languages import ENGLISH

router = APIRouter()

ENCODINGS = {"linear16": "pcm_s16le", "mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
MIN_ENDPOINTING_MS = 300  # Whisper needs context: shorter silences would cut utterances apart
CONTROLS: dict[str, Control] = {"KeepAlive": "keepalive", "Finalize": "flush", "CloseStream": "close"}
STATUS = [  # refusal → HTTP status and Deepgram-style err_code
    (AuthError, 401, "INVALID_AUTH"),
    (ForbiddenError, 403, "INSUFFICIENT_PERMISSIONS"),
    (RateLimitedError, 429, "TOO_MANY_REQUESTS"),
    (QuotaError, 429, "TOO_MANY_REQUESTS"),
    (CapacityError, 503, "SERVICE_UNAVAILABLE"),
    (InvalidRequestError, 400, "Bad Request"),
]


@dataclass(frozen=True)
class ListenOptions:
    stream: StreamOptions
    channels: int
    interim_results: bool
    vad_events: bool
    utterance_end: bool
    punctuate: bool
    language: str


def listen_keyterms(params: QueryParams) -> tuple[str, ...]:
    """Deepgram's ``keyterm`` (Nova-3) and ``keywords`` (``word`` or ``word:intensifier``; Nova-2)
    both become key terms; a keyword with an intensifier ≤ 0 (Deepgram: suppress it) is left out,
    and a bad intensifier is an error."""
    terms = query_list(params, "keyterm")
    for raw in query_list(params, "keywords"):
        word, sep, boost = raw.rpartition(":")
        if not sep:
            terms.append(raw)
            continue
        try:
            intensifier = float(boost)
        except ValueError:
            raise InvalidRequestError(f"keywords: {raw[:40]!r} is not word:intensifier") from None
        if intensifier > 0:
            terms.append(word)
    return prompting.keyterms(terms, "keyterm")


def parse_listen(params: QueryParams, languages: frozenset[str]) -> ListenOptions:
    """Deepgram's query string → stream options. Unknown parameters are ignored."""
    multilingual = languages != ENGLISH
    encoding = params.get("encoding")
    if encoding is None:
        raise InvalidRequestError(
            "voxindex takes raw audio: set encoding (linear16, mulaw or alaw) and sample_rate"
        )
    if encoding not in ENCODINGS:
        raise InvalidRequestError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding[:20]!r}")
    rate = int_param(params, "sample_rate")
    if rate is None or not 8000 <= rate <= 48000:
        raise InvalidRequestError("sample_rate is required for raw audio and must be 8000..48000")
    given = int_param(params, "channels")
    channels = 1 if given is None else given
    if not 1 <= channels <= 8:
        raise InvalidRequestError("channels must be 1..8 (channels are mixed down to one)")
    endpointing = params.get("endpointing", "10")
    if endpointing.lower() == "false":
        endpointing_ms = 10_000  # no pause ends an utterance short of 10 s of silence
    else:
        asked = int_param(params, "endpointing")
        endpointing_ms = min(10_000, max(MIN_ENDPOINTING_MS, 10 if asked is None else asked))
    language = params.get("language") or "en"
    code = language.split("-")[0].lower()
    if code == "multi":
        code = "auto"
    if not multilingual and code not in ("en", "auto"):
        raise InvalidRequestError(
            f"this server's model is English-only; language={language[:20]!r} unsupported"
        )
    if code != "auto" and not re.fullmatch(r"[a-z]{2,3}", code):
        raise InvalidRequestError(f"language must be a code like 'en' or 'en-US', got {language[:20]!r}")
    interim = _bool(params, "interim_results", False)
    return ListenOptions(
        stream=StreamOptions(
            sample_rate=rate,
            encoding=ENCODINGS[encoding],
            language=None if code == "auto" or not multilingual else code,
            interim_results=interim,
            endpointing_ms=endpointing_ms,
            vad=True,
            diarize=_bool(params, "diarize", False),
            keyterms=listen_keyterms(params),
        ),
        channels=channels,
        interim_results=interim,
        vad_events=_bool(params, "vad_events", False),
        utterance_end=params.get("utterance_end_ms") is not None,
        punctuate=_bool(params, "punctuate", False) or _bool(params, "smart_format", False),
        language=language,
    )


def _bool(params: QueryParams, name: str, default: bool) -> bool:
    raw = params.get(name)
    return default if raw is None else raw.strip().lower() in ("true", "1", "yes")


# ---------------- messages ----------------
def plain_word(word: str) -> str:
    """Deepgram's ``word``: lower case, without surrounding punctuation."""
    return word.strip().strip(".,!?;:\"'()[]«»¿¡…").lower() or word.strip().lower()


class DeepgramCodec:
    def __init__(self, stream: Stream, options: ListenOptions, model: str) -> None:
        self.request_id = stream.id
        self.options = options
        self.model = model
        self.started = time.time()
        self.last_word_end = 0.0
        self.metadata = {
            "request_id": stream.id,
            "model_info": {"name": model, "version": __version__, "arch": "whisper"},
            "model_uuid": hashlib.sha1(model.encode()).hexdigest(),
        }

    def control(self, text: str) -> Control:
        kind = message_type(text)
        if kind not in CONTROLS:
            raise InvalidRequestError(
                f"unknown message type {kind[:40]!r}; expected KeepAlive, Finalize or CloseStream"
            )
        return CONTROLS[kind]

    def render(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, SpeechStarted):
            return (
                [{"type": "SpeechStarted", "channel": [0], "timestamp": event.time}]
                if self.options.vad_events
                else []
            )
        if isinstance(event, Interim):
            if not self.options.interim_results:
                return []
            return [self._results(event.text, event.start, event.end, [], 0.0, final=False)]
        if isinstance(event, Final):
            words = [
                {
                    "word": plain_word(w.word),
                    "start": w.start,
                    "end": w.end,
                    "confidence": w.confidence,
                    "punctuated_word": w.word.strip(),
                    **(
                        {"speaker": w.speaker, "speaker_confidence": w.speaker_confidence}
                        if w.speaker is not None
                        else {}
                    ),
                }
                for w in event.words
            ]
            confidence = sum(w.confidence for w in event.words) / len(event.words) if event.words else 0.0
            self.last_word_end = event.end
            return [
                self._results(
                    event.text,
                    event.start,
                    event.end,
                    words,
                    confidence,
                    final=True,
                    speech_final=event.reason == "endpoint",
                    from_finalize=event.reason == "flush",
                )
            ]
        if isinstance(event, SpeechEnded):
            if not self.options.utterance_end:
                return []
            return [{"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end}]
        if isinstance(event, Closed):
            return [
                {
                    "type": "Metadata",
                    "transaction_key": "deprecated",
                    "request_id": self.request_id,
                    "sha256": hashlib.sha256(self.request_id.encode()).hexdigest(),
                    "created": datetime.fromtimestamp(self.started, UTC).isoformat().replace("+00:00", "Z"),
                    "duration": event.duration,
                    "channels": self.options.channels,
                    "models": [self.metadata["model_uuid"]],
                    "model_info": {self.metadata["model_uuid"]: self.metadata["model_info"]},
                }
            ]
        if isinstance(event, Error):
            return [
                {
                    "type": "Error",
                    "err_code": event.code,
                    "err_msg": event.message,
                    "description": event.message,
                }
            ]
        return []  # Ready: Deepgram sends nothing before the first result

    def _results(
        self,
        text: str,
        start: float,
        end: float,
        words: list[dict[str, Any]],
        confidence: float,
        *,
        final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        transcript = text if self.options.punctuate else " ".join(plain_word(w) for w in text.split())
        if not self.options.punctuate:
            for w in words:
                w.pop("punctuated_word", None)
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(max(0.0, end - start), 3),
            "start": round(start, 3),
            "is_final": final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [{"transcript": transcript, "confidence": confidence, "words": words}]
            },
            "metadata": self.metadata,
        }


# ---------------- the handshake ----------------
def deepgram_token(ws: WebSocket, offered: list[str]) -> str | None:
    """A credential outside the headers: ``access_token``, or (browsers, which cannot set
    headers) the subprotocols ``["token", "<key>"]``."""
    if "token" in offered[:-1]:
        return offered[offered.index("token") + 1]
    return ws.query_params.get("access_token")


@router.websocket("/v1/listen")
async def listen_route(ws: WebSocket) -> None:
    """Deepgram's live protocol (docs/compatibility.md)."""
    services = await ready(ws, refuse)
    if services is not None:
        await deepgram_stream(ws, services)


async def deepgram_stream(ws: WebSocket, services: Services) -> None:
    s = services
    scheduler, settings, metrics, draining = s.scheduler, s.settings, s.metrics, s.draining
    auth, connects = s.auth, s.connects
    offered = list(ws.scope.get("subprotocols") or [])
    try:
        stream, options = _admit(ws, offered, scheduler, settings, auth, connects, draining)
    except VoxError as e:
        refused(ws, e, metrics)
        await refuse(ws, e)
        return
    opened(ws, stream, "deepgram", metrics)
    await ws.accept(
        subprotocol="token" if "token" in offered else None,
        headers=[(b"dg-request-id", stream.id.encode())],
    )
    codec = DeepgramCodec(stream, options, scheduler.model.name)
    pcm = PcmDecoder(options.stream.encoding, options.stream.sample_rate, options.channels)
    await serve_stream(ws, stream, scheduler, settings, codec, pcm, draining)


async def refuse(ws: WebSocket, error: VoxError) -> None:
    """Deepgram refuses the handshake itself: an HTTP status and its JSON error body."""
    status, code = next(((s, c) for kind, s, c in STATUS if isinstance(error, kind)), (500, "INTERNAL"))
    body = {"err_code": code, "err_msg": error.message, "category": error.code, "request_id": ""}
    await ws.send_denial_response(JSONResponse(body, status_code=status))


def _admit(
    ws: WebSocket,
    offered: list[str],
    scheduler: Scheduler,
    settings: Settings,
    auth: Authenticator,
    connects: ConnectLimits,
    draining: asyncio.Event | None,
) -> tuple[Stream, ListenOptions]:
    principal = authorize(ws, deepgram_token(ws, offered), settings, auth, connects, draining)
    options = parse_listen(ws.query_params, scheduler.model.languages)
    stream = scheduler.open(options.stream, asyncio.get_running_loop(), principal.tenant)
    return stream, options

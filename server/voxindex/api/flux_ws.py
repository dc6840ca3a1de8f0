"""``GET /v2/listen``: Deepgram Flux's turn-taking protocol, so Flux clients work unchanged
(``livekit-plugins-deepgram``'s ``STTv2`` among them).

Query parameters (``model``, ``encoding``, ``sample_rate``, ``eot_threshold``,
``eager_eot_threshold``, ``eot_timeout_ms``, repeated ``keyterm``, ``language_hint``), client
messages (``CloseStream``, ``Configure``, ``ForceEndTurn``, ``KeepAlive``) and server messages
(``Connected``, ``TurnInfo``, ``ConfigureSuccess``/``ConfigureFailure``, ``Error``) follow
https://developers.deepgram.com/docs/flux. Turns are the engine's (engine/turns/): every
``TurnInfo`` is one of its turn events. Credentials and refusals are ``/v1/listen``'s (a bad
parameter is an HTTP 400 at the handshake, with Deepgram's error body). Parameters voxindex
has no use for (``mip_opt_out``, ``tag``, …) are accepted and ignored. See docs/compatibility.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket

from voxindex.api.deepgram_ws import ENCODINGS, deepgram_token, refuse
from voxindex.api.protocol import Configure, Control, int_param, message_object, query_list, turn_options
from voxindex.api.services import Services
from voxindex.api.session import authorize, opened, ready, refused, serve_stream
from voxindex.audio import PcmDecoder
from voxindex.engine import prompting
from voxindex.engine.events import Configured, Error, Event, TurnInfo
from voxindex.engine.stream import Stream
from voxindex.engine.types import StreamOptions, TurnOptions
from voxindex.errors import InvalidRequestError, VoxError
from voxindex.languages import ENGLISH

router = APIRouter()

MODELS = ("flux-general-en", "flux-general-multi")
CONTROLS: dict[str, Control] = {"CloseStream": "close", "ForceEndTurn": "flush", "KeepAlive": "keepalive"}


@dataclass(frozen=True)
class FluxOptions:
    stream: StreamOptions
    model: str


def parse_flux(params: QueryParams, languages: frozenset[str]) -> FluxOptions:
    """Flux's query string → stream options; InvalidRequestError names a bad parameter."""
    model = params.get("model")
    if model not in MODELS:
        raise InvalidRequestError(f"model must be one of {', '.join(MODELS)}, got {str(model)[:40]!r}")
    multilingual = languages != ENGLISH
    if model == "flux-general-multi" and not multilingual:
        raise InvalidRequestError("flux-general-multi needs a multilingual model; this one reads English")
    encoding = params.get("encoding", "linear16")
    if encoding not in ENCODINGS:
        raise InvalidRequestError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding[:20]!r}")
    rate = int_param(params, "sample_rate")
    if rate is None or not 8000 <= rate <= 48000:
        raise InvalidRequestError("sample_rate is required for raw audio and must be 8000..48000")
    hints = [h.split("-")[0].lower() for h in query_list(params, "language_hint")]
    language: str | None = None
    if multilingual:  # flux-general-en reads English; -multi detects, or takes its only hint
        language = "en" if model == "flux-general-en" else (hints[0] if len(hints) == 1 else "auto")
        if language not in languages and language != "auto":
            raise InvalidRequestError(f"language_hint {language[:20]!r} is not a language this model reads")
    return FluxOptions(
        StreamOptions(
            sample_rate=rate,
            encoding=ENCODINGS[encoding],
            language=language,
            interim_results=True,
            keyterms=prompting.keyterms(query_list(params, "keyterm"), "keyterm"),
            turns=turn_options(params),
        ),
        model,
    )


class FluxCodec:
    def __init__(self, stream: Stream, turns: TurnOptions) -> None:
        self.request_id = stream.id
        self.turns = turns  # as configured so far: a Configure is a partial update
        self.sequence = 0

    def control(self, text: str) -> Control:
        message = message_object(text)
        kind = str(message["type"])
        if kind == "Configure":
            return self._configure(message)
        if kind not in CONTROLS:
            raise InvalidRequestError(
                f"unknown message type {kind[:40]!r}; expected one of {', '.join([*CONTROLS, 'Configure'])}"
            )
        return CONTROLS[kind]

    def render(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, TurnInfo):
            return [self._message("TurnInfo", **turn_info(event))]
        if isinstance(event, Configured):
            if event.error is not None:
                return [self._message("ConfigureFailure", description=event.error)]
            return [self._message("ConfigureSuccess", **_configured(event))]
        if isinstance(event, Error):
            return [self._message("Error", code=event.code, description=event.message)]
        return []  # the rest is told by the turn events

    def connected(self) -> dict[str, Any]:
        return self._message("Connected")

    def _message(self, kind: str, **fields: Any) -> dict[str, Any]:
        message = {"type": kind, "request_id": self.request_id, "sequence_id": self.sequence, **fields}
        self.sequence += 1
        return message

    def _configure(self, message: dict[str, Any]) -> Configure:
        """A partial update: thresholds given replace theirs, ``keyterms`` replaces the list."""
        try:
            thresholds = message.get("thresholds", {})
            if not isinstance(thresholds, dict):
                raise InvalidRequestError("thresholds must be an object")
            unknown = sorted(set(thresholds) - {"eot_threshold", "eager_eot_threshold", "eot_timeout_ms"})
            if unknown:
                raise InvalidRequestError(f"unknown threshold(s): {', '.join(unknown)[:80]}")
            turns = turn_options(thresholds, self.turns)
            terms = message.get("keyterms")
            if terms is not None and not isinstance(terms, list):
                raise InvalidRequestError("keyterms must be a list of strings")
            keyterms = prompting.keyterms(terms, "keyterms") if terms is not None else None
        except InvalidRequestError as e:
            return Configure(error=e.message)
        self.turns = turns
        return Configure(keyterms, turns if thresholds else None)


def turn_info(turn: TurnInfo) -> dict[str, Any]:
    """A turn event as Flux's ``TurnInfo`` fields (every word with a confidence)."""
    return {
        "event": turn.event.value,
        "turn_index": turn.index,
        "audio_window_start": turn.start,
        "audio_window_end": turn.end,
        "transcript": turn.text,
        "words": [
            {"word": w.word.strip(), "confidence": round(w.confidence, 4), "start": w.start, "end": w.end}
            for w in turn.words
        ],
        "end_of_turn_confidence": turn.end_of_turn_probability,
    }


def _configured(event: Configured) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if event.turns is not None:
        fields["thresholds"] = {
            "eot_threshold": event.turns.eot_threshold,
            "eager_eot_threshold": event.turns.eager_threshold,
            "eot_timeout_ms": round(event.turns.eot_timeout_s * 1000),
        }
    if event.keyterms is not None:
        fields["keyterms"] = list(event.keyterms)
    return fields


@router.websocket("/v2/listen")
async def flux_route(ws: WebSocket) -> None:
    """Deepgram Flux's turn-taking protocol (docs/compatibility.md)."""
    services = await ready(ws, refuse)
    if services is not None:
        await flux_stream(ws, services)


async def flux_stream(ws: WebSocket, services: Services) -> None:
    s = services
    offered = list(ws.scope.get("subprotocols") or [])
    try:
        principal = authorize(ws, deepgram_token(ws, offered), s.settings, s.auth, s.connects, s.draining)
        options = parse_flux(ws.query_params, s.scheduler.model.languages)
        stream = s.scheduler.open(options.stream, asyncio.get_running_loop(), principal.tenant)
    except VoxError as e:
        refused(ws, e, s.metrics)
        await refuse(ws, e)
        return
    opened(ws, stream, "flux", s.metrics)
    await ws.accept(
        subprotocol="token" if "token" in offered else None,
        headers=[(b"dg-request-id", stream.id.encode())],
    )
    assert options.stream.turns is not None
    codec = FluxCodec(stream, options.stream.turns)
    await ws.send_json(codec.connected())
    pcm = PcmDecoder(options.stream.encoding, options.stream.sample_rate)
    await serve_stream(ws, stream, s.scheduler, s.settings, codec, pcm, s.draining)

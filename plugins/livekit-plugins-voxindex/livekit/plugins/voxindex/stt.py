"""voxindex STT for LiveKit Agents: the native ``/v1/stream`` WebSocket protocol, and
``/v1/audio/transcriptions`` for whole-buffer recognition.

Events follow the server's: ``speech_started`` → START_OF_SPEECH, ``interim`` →
INTERIM_TRANSCRIPT, ``final`` → FINAL_TRANSCRIPT (word timings, ``speech_end_time``),
``speech_ended`` → END_OF_SPEECH, always paired. With ``turn_detection=True`` the server decides
when the user's turn is over (its end-of-turn model: docs/protocol.md, "Turns"), for
``AgentSession(turn_detection="stt")``: ``turn_started`` → START_OF_SPEECH, ``interim`` →
INTERIM_TRANSCRIPT, ``eager_end_of_turn`` → PREFLIGHT_TRANSCRIPT (preemptive generation may start),
``turn_resumed`` → INTERIM_TRANSCRIPT (the preflight is stale), ``end_of_turn`` →
FINAL_TRANSCRIPT with the whole turn, then END_OF_SPEECH; a pause inside a sentence ends nothing.
Key terms (``keyterms=``, ``update_options``
and the framework's session key terms) and conversation items (``chat_context``: each new turn
of the agent or the user) go to the server as control messages on the live stream, without a
reconnect; they prime the next utterances (docs/protocol.md, "Key terms and context").
Refusals map onto the framework's errors:
credentials and bad requests are final (``retryable=False``); lost connections, a full server
and rate limits are retried by the framework, reconnecting with the audio still queued.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

import aiohttp
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    LanguageCode,
    stt,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, is_given

from .log import logger

if TYPE_CHECKING:
    from livekit.agents.voice.events import ConversationItemAddedEvent

# close code → HTTP-like status: 4xxx codes mirror HTTP statuses (docs/protocol.md)
_CLOSE_STATUS = {1011: 500, 1013: 503, 4400: 400, 4401: 401, 4403: 403, 4408: 408, 4413: 413, 4429: 429}
# error code → HTTP-like status, for refusals whose close code has not arrived yet
_CODE_STATUS = {
    "unauthenticated": 401,
    "forbidden": 403,
    "invalid_request": 400,
    "protocol_violation": 400,
    "frame_too_large": 413,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "over_capacity": 503,
    "engine_error": 500,
}
_KEEPALIVE_S = 5.0
_CONTEXT_ITEMS = 8  # conversation items kept for a reconnect (the server keeps as many)


@dataclass
class STTOptions:
    base_url: str
    credential: str | None
    language: str | None
    interim_results: bool
    endpointing_ms: int
    sample_rate: int
    diarization: bool = False
    task: Literal["transcribe", "translate"] = "transcribe"
    keyterms: list[str] = field(default_factory=list)  # the caller's and the session's, merged
    turn_detection: bool = False  # the server's turns (``turns=true``) drive the speech events
    eot_threshold: float = 0.7
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int = 5000

    def stream_url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.startswith("http"):
            base = "ws" + base[len("http") :]
        query: dict[str, Any] = {
            "sample_rate": self.sample_rate,
            "encoding": "pcm_s16le",
            "interim_results": str(self.interim_results).lower(),
            "endpointing_ms": self.endpointing_ms,
        }
        if self.language:
            query["language"] = self.language
        if self.diarization:
            query["diarize"] = "true"
        if self.task != "transcribe":
            query["task"] = self.task
        if self.keyterms:
            query["keyterms"] = self.keyterms
        if self.turn_detection:
            query["turns"] = "true"
            query["eot_threshold"] = self.eot_threshold
            query["eot_timeout_ms"] = self.eot_timeout_ms
            if self.eager_eot_threshold is not None:
                query["eager_eot_threshold"] = self.eager_eot_threshold
        return f"{base}/v1/stream?{urlencode(query, doseq=True)}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"} if self.credential else {}


class STT(stt.STT[Literal["metrics_collected", "error"]]):
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        token: NotGivenOr[str] = NOT_GIVEN,
        language: str | None = "en",
        interim_results: bool = True,
        endpointing_ms: int = 500,
        sample_rate: int = 16000,
        diarization: bool = False,
        keyterms: list[str] | None = None,
        task: Literal["transcribe", "translate"] = "transcribe",
        turn_detection: bool = False,
        eot_threshold: float = 0.7,
        eager_eot_threshold: float | None = None,
        eot_timeout_ms: int = 5000,
        http_session: aiohttp.ClientSession | None = None,
    ) -> None:
        """
        Args:
            base_url: the voxindex server, e.g. ``https://stt.example.com`` (default:
                ``$VOXINDEX_URL`` or ``http://127.0.0.1:8080``).
            api_key: an API key (``voxindex keys create``), default ``$VOXINDEX_API_KEY``.
            token: a JWT instead of an API key, default ``$VOXINDEX_TOKEN``.
            language: a language code for multilingual models, or None to detect it.
            interim_results: send interim transcripts about once per second of speech.
            endpointing_ms: silence that ends an utterance (100..10000).
            sample_rate: the rate audio is sent at; frames are resampled to it.
            diarization: label each final with its speaker (``SpeechData.speaker_id``, "S0",
                "S1", … stable for the stream; ``is_primary_speaker``: the one heard most).
            keyterms: names and terms to listen for (product names, people, account terms);
                merged with the session's key terms the framework sets.
            task: ``"translate"`` gives English text of speech in any language (multilingual
                models); ``SpeechData.language`` is then "en" and ``source_languages`` holds
                the language spoken.
            turn_detection: the server tells when the user's turn is over (its acoustic and
                lexical end-of-turn model), for ``AgentSession(turn_detection="stt")``: one
                FINAL_TRANSCRIPT and END_OF_SPEECH per turn, PREFLIGHT_TRANSCRIPT on an eager
                end; ``endpointing_ms`` is then unused.
            eot_threshold: end-of-turn probability that ends a turn (0.5..1.0).
            eager_eot_threshold: probability that sends an eager end (0.3..0.9, at most
                ``eot_threshold``) for preemptive generation; None: none.
            eot_timeout_ms: silence that ends a turn whatever the probability (500..60000).
        """
        if eager_eot_threshold is not None and eager_eot_threshold > eot_threshold:
            raise ValueError("eager_eot_threshold must not exceed eot_threshold")
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True,
                interim_results=True,
                aligned_transcript="word",
                manual_flush=True,
                offline_recognize=True,
                diarization=diarization,
                keyterms=True,
                chat_context=True,
            )
        )
        credential = (
            api_key
            if is_given(api_key)
            else token
            if is_given(token)
            else os.environ.get("VOXINDEX_API_KEY") or os.environ.get("VOXINDEX_TOKEN")
        )
        self._opts = STTOptions(
            base_url=base_url or os.environ.get("VOXINDEX_URL") or "http://127.0.0.1:8080",
            credential=credential,
            language=language,
            interim_results=interim_results,
            endpointing_ms=endpointing_ms,
            sample_rate=sample_rate,
            diarization=diarization,
            task=task,
            keyterms=list(dict.fromkeys(keyterms or [])),
            turn_detection=turn_detection,
            eot_threshold=eot_threshold,
            eager_eot_threshold=eager_eot_threshold,
            eot_timeout_ms=eot_timeout_ms,
        )
        self._user_keyterms = list(self._opts.keyterms)
        self._session_keyterms: list[str] = []
        self._context: deque[str] = deque(maxlen=_CONTEXT_ITEMS)  # the newest conversation items
        self._session = http_session
        self._own_session: aiohttp.ClientSession | None = None
        self._streams: weakref.WeakSet[SpeechStream] = weakref.WeakSet()

    @property
    def model(self) -> str:
        return "voxindex"

    @property
    def provider(self) -> str:
        return "voxindex"

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        try:
            self._session = utils.http_context.http_session()
        except RuntimeError:  # outside a job: a session of our own, closed by aclose()
            self._own_session = self._session = aiohttp.ClientSession()
        return self._session

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        opts = replace(self._opts, keyterms=list(self._opts.keyterms))
        if is_given(language):
            opts.language = language
        stream = SpeechStream(stt=self, opts=opts, conn_options=conn_options, session=self._ensure_session())
        self._streams.add(stream)
        return stream

    def update_options(
        self,
        *,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        interim_results: NotGivenOr[bool] = NOT_GIVEN,
        endpointing_ms: NotGivenOr[int] = NOT_GIVEN,
        keyterms: NotGivenOr[list[str]] = NOT_GIVEN,
        eot_threshold: NotGivenOr[float] = NOT_GIVEN,
        eager_eot_threshold: NotGivenOr[float | None] = NOT_GIVEN,
        eot_timeout_ms: NotGivenOr[int] = NOT_GIVEN,
    ) -> None:
        """Change options; live streams reconnect with them (no audio is lost), except key
        terms and turn thresholds, which apply to the live streams' next readings and pauses
        without a reconnect."""
        if is_given(keyterms):
            self._user_keyterms = list(keyterms)
            self._set_keyterms()
        thresholds: dict[str, Any] = {}
        if is_given(eot_threshold):
            self._opts.eot_threshold = thresholds["eot_threshold"] = eot_threshold
        if is_given(eager_eot_threshold):
            self._opts.eager_eot_threshold = eager_eot_threshold
            thresholds["eager_eot_threshold"] = eager_eot_threshold
        if is_given(eot_timeout_ms):
            self._opts.eot_timeout_ms = thresholds["eot_timeout_ms"] = eot_timeout_ms
        if thresholds and self._opts.turn_detection:
            for stream in self._streams:
                stream._set_thresholds(thresholds)
        if is_given(language):
            self._opts.language = language
        if is_given(interim_results):
            self._opts.interim_results = interim_results
        if is_given(endpointing_ms):
            self._opts.endpointing_ms = endpointing_ms
        if is_given(language) or is_given(interim_results) or is_given(endpointing_ms):
            for stream in self._streams:
                stream.update_options(
                    language=language, interim_results=interim_results, endpointing_ms=endpointing_ms
                )

    def _update_session_keyterms(self, keyterms: list[str]) -> None:
        """The framework's session key terms (merged after the caller's own)."""
        if keyterms != self._session_keyterms:
            self._session_keyterms = list(keyterms)
            self._set_keyterms()

    def _set_keyterms(self) -> None:
        self._opts.keyterms = list(dict.fromkeys([*self._user_keyterms, *self._session_keyterms]))
        for stream in self._streams:
            stream._set_keyterms(self._opts.keyterms)

    def _push_conversation_item(self, ev: ConversationItemAddedEvent) -> None:
        """Each new conversation turn (the agent's reply, the user's turn) primes the next
        utterances of every live stream, and of streams opened later."""
        item = ev.item
        role = getattr(item, "role", None)
        if getattr(item, "type", None) != "message" or role not in ("assistant", "user"):
            return
        text = item.text_content  # type: ignore[union-attr]
        if not text:
            return
        self._context.append(text)
        for stream in self._streams:
            stream._push_context(text)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        """Whole-buffer recognition through ``POST /v1/audio/transcriptions`` (offline decoding)."""
        language_code = language if is_given(language) else self._opts.language
        form = aiohttp.FormData()
        form.add_field("file", rtc.combine_audio_frames(buffer).to_wav_bytes(), filename="audio.wav")
        form.add_field("model", "voxindex")
        form.add_field("response_format", "verbose_json")
        form.add_field("timestamp_granularities[]", "word")
        if language_code:
            form.add_field("language", language_code)
        url = f"{self._opts.base_url.rstrip('/')}/v1/audio/transcriptions"
        try:
            async with self._ensure_session().post(
                url,
                data=form,
                headers=self._opts.headers(),
                timeout=aiohttp.ClientTimeout(
                    total=max(30.0, conn_options.timeout), sock_connect=conn_options.timeout
                ),
            ) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
                    raise APIStatusError(
                        error.get("message", f"voxindex answered {response.status}"),
                        status_code=response.status,
                        body=body,
                    )
        except TimeoutError:
            raise APITimeoutError() from None
        except aiohttp.ClientError as e:
            raise APIConnectionError(f"cannot reach voxindex at {url}: {e}") from e
        timings = [(str(w["word"]), float(w["start"]), float(w["end"])) for w in body.get("words", [])]
        words = [TimedString(w, start_time=start, end_time=end) for w, start, end in timings]
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[
                stt.SpeechData(
                    language=LanguageCode(language_code or "en"),
                    text=body["text"],
                    start_time=timings[0][1] if timings else 0.0,
                    end_time=timings[-1][2] if timings else float(body.get("duration", 0.0)),
                    words=words or None,
                )
            ],
        )

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None
        await super().aclose()


class SpeechStream(stt.RecognizeStream):
    def __init__(
        self, *, stt: STT, opts: STTOptions, conn_options: APIConnectOptions, session: aiohttp.ClientSession
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=opts.sample_rate)
        self._opts = opts
        self._session = session
        self._reconnect = asyncio.Event()
        self._speaking = False
        self._request_id = ""
        # (seconds of audio sent on this connection, wall time it was sent): stream time → wall time
        self._sent_s: list[float] = []
        self._sent_at: list[float] = []
        self._unreported_s = 0.0
        self._earlier_s = 0.0  # audio sent on this run's earlier connections (update_options)
        self._spoken: dict[int, float] = {}  # diarized: seconds of finals per speaker label
        self._controls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # configure / context messages
        self._owner = stt  # its conversation items, for a reconnect

    def _set_keyterms(self, keyterms: list[str]) -> None:
        self._opts.keyterms = list(keyterms)  # a reconnect sends them in its URL
        self._controls.put_nowait({"type": "configure", "keyterms": self._opts.keyterms})

    def _set_thresholds(self, thresholds: dict[str, Any]) -> None:
        self._opts = replace(self._opts, **{k: v for k, v in thresholds.items()})  # for a reconnect
        self._controls.put_nowait({"type": "configure", **thresholds})

    def _push_context(self, text: str) -> None:
        self._controls.put_nowait({"type": "context", "text": text})

    def update_options(
        self,
        *,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        interim_results: NotGivenOr[bool] = NOT_GIVEN,
        endpointing_ms: NotGivenOr[int] = NOT_GIVEN,
    ) -> None:
        if is_given(language):
            self._opts.language = language
        if is_given(interim_results):
            self._opts.interim_results = interim_results
        if is_given(endpointing_ms):
            self._opts.endpointing_ms = endpointing_ms
        self._reconnect.set()

    async def _run(self) -> None:
        # a retry after a lost connection is a new _run: the framework moves start_time_offset on
        # by the wall time since (real-time audio); an update_options reconnect is our own, and
        # its new server stream starts at 0 too, so it goes on from the audio already sent
        self._earlier_s, self._sent_s = 0.0, []
        while True:
            ws = await self._connect()
            # a new server stream: its key terms came in the URL; the context is sent again whole
            while not self._controls.empty():
                self._controls.get_nowait()
            for text in self._owner._context:
                await ws.send_str(json.dumps({"type": "context", "text": text}))
            self._earlier_s += self._sent_s[-1] if self._sent_s else 0.0
            self._sent_s, self._sent_at = [], []
            closing = asyncio.Event()
            tasks = [
                asyncio.create_task(self._send(ws, closing)),
                asyncio.create_task(self._recv(ws, closing)),
                asyncio.create_task(self._keepalive(ws)),
                asyncio.create_task(self._send_controls(ws)),
            ]
            reconnect = asyncio.create_task(self._reconnect.wait())
            try:
                receiving = tasks[1]
                done, _ = await asyncio.wait(
                    [tasks[0], receiving, reconnect], return_when=asyncio.FIRST_COMPLETED
                )
                if tasks[0] in done and tasks[0].exception() is None and receiving not in done:
                    done, _ = await asyncio.wait([receiving, reconnect], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not reconnect:
                        task.result()  # raise what ended it
                if reconnect not in done:
                    return  # the server said `closed`: the input has ended
                self._reconnect.clear()
            finally:
                await utils.aio.gracefully_cancel(*tasks, reconnect)
                with contextlib.suppress(Exception):
                    await ws.close()
                self._report_usage()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        url = self._opts.stream_url()
        started = time.perf_counter()
        try:
            ws = await asyncio.wait_for(
                self._session.ws_connect(url, headers=self._opts.headers(), heartbeat=30.0),
                self._conn_options.timeout,
            )
        except TimeoutError:
            raise APITimeoutError(f"no answer from voxindex at {self._opts.base_url}") from None
        except aiohttp.WSServerHandshakeError as e:
            raise APIStatusError(
                f"voxindex refused the connection: {e.message}", status_code=e.status
            ) from None
        except (aiohttp.ClientError, OSError) as e:
            raise APIConnectionError(f"cannot reach voxindex at {self._opts.base_url}: {e}") from None
        first = await self._receive_json(ws)
        if first.get("type") != "ready":
            await ws.close()
            raise self._refusal(first, ws.close_code)
        self._request_id = str(first["stream_id"])
        self._report_connection_acquired(time.perf_counter() - started, False)
        return ws

    async def _receive_json(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return dict(json.loads(msg.data))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise self._refusal({}, ws.close_code)
        raise APIConnectionError(f"voxindex connection lost ({msg.type.name})")

    @staticmethod
    def _refusal(message: dict[str, Any], close_code: int | None) -> APIStatusError:
        status = _CODE_STATUS.get(message.get("code", ""), _CLOSE_STATUS.get(close_code or 0, 502))
        text = message.get("message") or f"voxindex closed the stream ({close_code})"
        code = message.get("code", "closed")
        return APIStatusError(f"{code}: {text}", status_code=status, body=message or None)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, closing: asyncio.Event) -> None:
        chunker = utils.audio.AudioByteStream(
            sample_rate=self._opts.sample_rate,
            num_channels=1,
            samples_per_channel=self._opts.sample_rate // 20,
        )
        sent_s = 0.0
        try:
            async for data in self._input_ch:
                if isinstance(data, rtc.AudioFrame):
                    frames = chunker.write(data.data.tobytes())
                else:
                    frames = chunker.flush()
                for frame in frames:
                    await ws.send_bytes(frame.data.tobytes())
                    sent_s += frame.duration
                    self._unreported_s += frame.duration
                    self._sent_s.append(sent_s)
                    self._sent_at.append(time.time())
                if isinstance(data, self._FlushSentinel):
                    await ws.send_str(json.dumps({"type": "flush"}))
            closing.set()
            await ws.send_str(json.dumps({"type": "close"}))
        except (aiohttp.ClientError, ConnectionError) as e:
            raise APIConnectionError(f"voxindex connection lost while sending: {e}") from e

    async def _send_controls(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            while not ws.closed:
                await ws.send_str(json.dumps(await self._controls.get()))

    async def _keepalive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            while not ws.closed:
                await asyncio.sleep(_KEEPALIVE_S)
                await ws.send_str(json.dumps({"type": "keepalive"}))

    async def _recv(self, ws: aiohttp.ClientWebSocketResponse, closing: asyncio.Event) -> None:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise (
                    self._refusal({}, ws.close_code)
                    if ws.close_code not in (1000, None)
                    else APIConnectionError("voxindex closed the stream before it ended")
                )
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise APIConnectionError("voxindex connection lost") from ws.exception()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            if message.get("type") == "closed":
                self._end_of_speech(None)
                return
            if message.get("type") == "error":
                await self._on_error(ws, message)
                continue
            self._on_event(message)

    async def _on_error(self, ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> None:
        """Errors that end the stream come with a close: wait for it and raise; others are logged."""
        logger.warning("voxindex: %s: %s", message.get("code"), message.get("message"))
        if message.get("code") in ("unauthenticated", "forbidden", "engine_error"):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.receive(), 5)
            raise self._refusal(message, ws.close_code)

    def _on_event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if self._opts.turn_detection:
            self._on_turn_event(kind, message)
            return
        if kind == "speech_started":
            self._start_of_speech(float(message["time"]))
        elif kind == "interim" and message.get("text"):
            self._start_of_speech(float(message["start"]))
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.INTERIM_TRANSCRIPT,
                    request_id=self._request_id,
                    alternatives=[self._speech_data(message)],
                )
            )
        elif kind == "final":
            self._start_of_speech(float(message["start"]))
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                    request_id=self._request_id,
                    alternatives=[self._speech_data(message)],
                    speech_end_time=self._wall_time(float(message["end"])),
                )
            )
            self._report_usage()
        elif kind == "speech_ended":
            self._end_of_speech(float(message["time"]))

    def _on_turn_event(self, kind: Any, message: dict[str, Any]) -> None:
        """The server's turns drive the speech events (``turn_detection=True``)."""
        if kind == "turn_started":
            self._start_of_speech(float(message["start"]))
        elif kind == "interim" and message.get("text") and self._speaking:
            self._send_transcript(stt.SpeechEventType.INTERIM_TRANSCRIPT, message)
        elif kind in ("eager_end_of_turn", "turn_resumed") and message.get("transcript") and self._speaking:
            kind_of = (
                stt.SpeechEventType.PREFLIGHT_TRANSCRIPT
                if kind == "eager_end_of_turn"
                else stt.SpeechEventType.INTERIM_TRANSCRIPT
            )
            self._send_transcript(kind_of, {**message, "text": message["transcript"]})
        elif kind == "end_of_turn":
            self._start_of_speech(float(message["start"]))
            if message.get("transcript"):
                self._send_transcript(
                    stt.SpeechEventType.FINAL_TRANSCRIPT, {**message, "text": message["transcript"]}
                )
            self._report_usage()
            self._end_of_speech(float(message["end"]))

    def _send_transcript(self, kind: stt.SpeechEventType, message: dict[str, Any]) -> None:
        final = kind == stt.SpeechEventType.FINAL_TRANSCRIPT
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=kind,
                request_id=self._request_id,
                alternatives=[self._speech_data(message)],
                speech_end_time=self._wall_time(float(message["end"])) if final else None,
            )
        )

    def _speech_data(self, message: dict[str, Any]) -> stt.SpeechData:
        offset = self.start_time_offset + self._earlier_s
        words = [
            TimedString(
                w["word"].strip(),
                start_time=w["start"] + offset,
                end_time=w["end"] + offset,
                confidence=w["confidence"],
                start_time_offset=offset,
            )
            for w in message.get("words", [])
        ]
        confidence = sum(w["confidence"] for w in message.get("words", [])) / len(words) if words else 0.0
        speaker = message.get("speaker")
        if speaker is not None:  # speech heard per speaker: the primary one is the most heard
            self._spoken[speaker] = self._spoken.get(speaker, 0.0) + message["end"] - message["start"]
        spoken = LanguageCode(message.get("language") or self._opts.language or "en")
        translated = self._opts.task == "translate"
        return stt.SpeechData(
            language=LanguageCode("en") if translated else spoken,
            source_languages=[spoken] if translated else None,
            text=message["text"],
            start_time=message["start"] + offset,
            end_time=message["end"] + offset,
            confidence=confidence,
            words=words or None,
            speaker_id=None if speaker is None else f"S{speaker}",
            is_primary_speaker=None
            if speaker is None
            else speaker == max(self._spoken, key=lambda k: self._spoken[k]),
        )

    def _start_of_speech(self, at: float) -> None:
        if self._speaking:
            return
        self._speaking = True
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH, speech_start_time=self._wall_time(at))
        )

    def _end_of_speech(self, at: float | None) -> None:
        if not self._speaking:
            return
        self._speaking = False
        ended = self._wall_time(at) if at is not None else time.time()
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.END_OF_SPEECH, request_id=self._request_id, speech_end_time=ended
            )
        )

    def _wall_time(self, t: float) -> float:
        """When the audio at stream time ``t`` was sent: the speaker's clock, not the server's."""
        i = bisect.bisect_left(self._sent_s, t)
        if i >= len(self._sent_s):
            return time.time()
        return self._sent_at[i] - (self._sent_s[i] - t)

    def _report_usage(self) -> None:
        if self._unreported_s <= 0:
            return
        duration, self._unreported_s = self._unreported_s, 0.0
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.RECOGNITION_USAGE,
                request_id=self._request_id,
                recognition_usage=stt.RecognitionUsage(audio_duration=duration),
            )
        )

"""OpenAI Realtime's events over the internal event model, for one transcription session:
client events → controls (``RealtimeCodec.control``), engine events → server events
(``RealtimeCodec.render``), shaped as the SDK's ``openai.types.realtime`` models.

An item is what was said from speech start to stop (``server_vad``), to the end of the user's
turn (``semantic_vad``: ``SpeechEnded`` comes at the turn's end), or up to the client's commit
(no turn detection): the finals inside it are its parts. Its deltas are the words the engine has
confirmed (``Interim.stable_text``), so they add up to its transcript as far as the final reading
agrees with them. A commit or a clear is a flush; the engine's ``Flushed`` closes (or drops) the
item. Format, language and the kind of turn detection stay once audio flows (the engine stream
was opened with them); key terms, prompt, eagerness and ``include`` change at any time.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from voxindex.api.protocol import Append, Configure, Control, message_object
from voxindex.api.realtime_session import (
    EAGERNESS,
    RealtimeConfig,
    SemanticVad,
    ServerVad,
    SessionError,
    fixed_unchanged,
    updated,
)
from voxindex.api.session import ENDING_ERRORS
from voxindex.engine.events import (
    Configured,
    Error,
    Event,
    Final,
    Flushed,
    Interim,
    SpeechEnded,
    SpeechStarted,
)
from voxindex.errors import InvalidRequestError

MIN_COMMIT_MS = 100  # OpenAI's: a smaller buffer is input_audio_buffer_commit_empty
SERVER_ERRORS = {"engine_error", "store_unavailable", "internal_error", "over_capacity", "server_restarting"}


@dataclass
class Item:
    """A user item being said: its finals so far and the text its deltas have sent."""

    id: str = field(default_factory=lambda: f"item_{uuid.uuid4().hex[:20]}")
    start: float | None = None  # stream time its speech started
    parts: list[Final] = field(default_factory=list)
    sent: str = ""

    def text(self, tail: str = "") -> str:
        return " ".join([p.text for p in self.parts] + ([tail] if tail else []))


class RealtimeCodec:
    def __init__(self, config: RealtimeConfig, languages: frozenset[str], max_append_bytes: int) -> None:
        self.config = config
        self.languages = languages
        self.max_append = max_append_bytes
        self.audio_started = False  # the engine stream runs with the session as it was then
        self.buffered_bytes = 0  # appended since the last commit or clear
        self.item: Item | None = None
        self.previous_item_id: str | None = None
        self.pending: deque[str] = deque()  # commits and clears waiting for the engine's flush
        self.replies: list[dict[str, Any]] = []  # answered at once (before any audio)
        self._events = 0

    # ---------------- client events ----------------
    def control(self, text: str) -> Control:
        try:
            message = message_object(text)
        except InvalidRequestError as e:
            raise SessionError(
                e.message.replace("control messages", "client events"), "invalid_json"
            ) from None
        event_id = message.get("event_id") if isinstance(message.get("event_id"), str) else None
        try:
            return self._dispatch(message)
        except SessionError as e:
            e.event_id = event_id
            raise

    def _dispatch(self, message: dict[str, Any]) -> Control:
        kind = message["type"]
        if kind == "session.update":
            return self._update(message.get("session"))
        if kind == "input_audio_buffer.append":
            return self._append(message.get("audio"))
        if kind == "input_audio_buffer.commit":
            ms = self.buffered_bytes / self._bytes_per_ms()
            if ms < MIN_COMMIT_MS:
                raise SessionError(
                    f"buffer too small: expected at least {MIN_COMMIT_MS}ms of audio, "
                    f"but the buffer only has {ms:.2f}ms of audio",
                    "input_audio_buffer_commit_empty",
                )
            self.buffered_bytes = 0
            self.pending.append("commit")
            return "flush"
        if kind == "input_audio_buffer.clear":
            self.buffered_bytes = 0
            if not self.audio_started:
                self.replies.append(self._event("input_audio_buffer.cleared"))
                return "keepalive"
            self.pending.append("clear")
            return "flush"
        raise SessionError(
            f"unknown event type {str(kind)[:60]!r}: a transcription session takes session.update and "
            "input_audio_buffer.append, .commit and .clear",
            "unknown_event_type",
            "type",
        )

    def _update(self, session: object) -> Configure:
        new = updated(self.config, session, self.languages)
        old, self.config = self.config, new
        if not self.audio_started:
            return Configure()
        try:
            fixed_unchanged(old, new)
        except SessionError:
            self.config = old
            raise
        eagerness = isinstance(new.turn_detection, SemanticVad) and new.turn_detection != old.turn_detection
        return Configure(
            keyterms=new.keywords if new.keywords != old.keywords else None,
            turns=EAGERNESS[new.turn_detection.eagerness] if eagerness else None,  # type: ignore[union-attr]
            context=new.prompt if new.prompt != old.prompt and new.prompt else None,
        )

    def _append(self, audio: object) -> Append:
        if not isinstance(audio, str):
            raise SessionError(
                "input_audio_buffer.append needs audio: a base64 string",
                "missing_required_parameter",
                "audio",
            )
        if len(audio) > 4 * math.ceil(self.max_append / 3):
            seconds = self.max_append / self._bytes_per_ms() / 1000
            raise SessionError(
                f"an append holds at most {self.max_append} bytes of audio ({seconds:.1f} s in this format); "
                f"this one holds about {len(audio) * 3 // 4}: send smaller appends",
                "audio_too_large",
                "audio",
            )
        if not self.config.transcription:
            raise SessionError(
                "configure the session first: send session.update with session.type 'transcription' "
                "(or connect with ?intent=transcription)",
                "session_not_configured",
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise SessionError("audio is not valid base64", "invalid_base64", "audio") from None
        self.audio_started = True
        self.buffered_bytes += len(data)
        return Append(data)

    def _bytes_per_ms(self) -> float:
        width = 2 if self.config.format == "audio/pcm" else 1
        return self.config.rate * width / 1000

    # ---------------- server events ----------------
    def created(self) -> dict[str, Any]:
        return self._event("session.created", session=self.config.session())

    def take_replies(self) -> list[dict[str, Any]]:
        replies, self.replies = self.replies, []
        return replies

    def render(self, event: Event) -> list[dict[str, Any]]:
        vad = self.config.turn_detection is not None
        if isinstance(event, SpeechStarted) and vad:
            item = self._open_item()
            item.start = event.time
            padding = (
                self.config.turn_detection.prefix_padding_ms
                if isinstance(self.config.turn_detection, ServerVad)
                else 0
            )
            start_ms = max(0, round(event.time * 1000) - padding)
            return [
                self._event("input_audio_buffer.speech_started", audio_start_ms=start_ms, item_id=item.id)
            ]
        if isinstance(event, Interim):
            return self._delta(self._open_item(), event.stable_text)
        if isinstance(event, Final):
            self._open_item().parts.append(event)
            return []
        if isinstance(event, SpeechEnded) and vad:
            stopped_id = self.item.id if self.item is not None else self.previous_item_id
            stopped = self._event(
                "input_audio_buffer.speech_stopped",
                audio_end_ms=round(event.time * 1000),
                item_id=stopped_id or "",
            )
            return [stopped, *(self._commit(event.time) if self.item is not None else [])]
        if isinstance(event, Flushed):
            return self._flushed(event.time)
        if isinstance(event, Configured):
            return [self._event("session.updated", session=self.config.session())]
        if isinstance(event, Error):
            return [*self._failed(event), self.error(event)]
        return []  # Ready, TurnInfo, Closed: nothing in this protocol

    def _failed(self, error: Error) -> list[dict[str, Any]]:
        """The item being said when an error ends the stream (the model or the store failed)."""
        if error.code not in ENDING_ERRORS or (self.item is None and not self.pending):
            return []
        item, self.item = self._open_item(), None
        self.pending.clear()
        failure = {"type": "server_error", "code": error.code, "message": error.message}
        kind = "conversation.item.input_audio_transcription.failed"
        return [self._event(kind, item_id=item.id, content_index=0, error=failure)]

    def error(self, event: Error) -> dict[str, Any]:
        kind = "server_error" if event.code in SERVER_ERRORS else "invalid_request_error"
        body = {
            "type": kind,
            "code": event.code,
            "message": event.message,
            "param": event.param,
            "event_id": event.event_id,
        }
        return self._event("error", error=body)

    def _open_item(self) -> Item:
        if self.item is None:
            self.item = Item()
        return self.item

    def _delta(self, item: Item, tail: str) -> list[dict[str, Any]]:
        text = item.text(tail)
        if not text.startswith(item.sent) or len(text) <= len(item.sent):
            return []  # nothing new, or the reading took back words already sent
        delta, item.sent = text[len(item.sent) :], text
        return [
            self._event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=0,
                delta=delta,
            )
        ]

    def _flushed(self, until: float) -> list[dict[str, Any]]:
        """The engine's flush is done: what the commits and clears asked for."""
        messages: list[dict[str, Any]] = []
        while self.pending:
            if self.pending.popleft() == "commit":
                messages += self._commit(until)
            else:
                self.item = None  # transcribed and stored, as all audio is, but not reported
                messages.append(self._event("input_audio_buffer.cleared"))
        return messages

    def _commit(self, until: float) -> list[dict[str, Any]]:
        item, self.item = self._open_item(), None
        after = self.previous_item_id
        messages = [
            self._event("input_audio_buffer.committed", item_id=item.id, previous_item_id=after),
            self._event("conversation.item.added", item=_user_item(item.id, None), previous_item_id=after),
        ]
        self.previous_item_id = item.id
        transcript = item.text()
        messages += self._delta(item, "")
        words = [w for p in item.parts for w in p.words]
        start = item.start if item.start is not None else (words[0].start if words else until)
        completed: dict[str, Any] = {
            "item_id": item.id,
            "content_index": 0,
            "transcript": transcript,
            "usage": {"type": "duration", "seconds": round(max(0.0, until - start), 3)},
        }
        if self.config.logprobs:
            completed["logprobs"] = [
                {
                    "token": w.word,
                    "bytes": list(w.word.encode()),
                    "logprob": round(math.log(max(w.confidence, 1e-6)), 4),
                }
                for w in words
            ]
        completed["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end, "confidence": w.confidence}
            for w in words
        ]
        messages.append(self._event("conversation.item.input_audio_transcription.completed", **completed))
        done = _user_item(item.id, transcript)
        messages.append(self._event("conversation.item.done", item=done, previous_item_id=after))
        return messages

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._events += 1
        return {"type": kind, "event_id": f"event_{uuid.uuid4().hex[:12]}{self._events}", **fields}


def _user_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    """The user message an item is (``RealtimeConversationItemUserMessage``): its audio's
    transcript once read (the audio itself is not sent back)."""
    content = [{"type": "input_audio", "transcript": transcript}]
    return {
        "id": item_id,
        "type": "message",
        "role": "user",
        "object": "realtime.item",
        "status": "completed",
        "content": content,
    }

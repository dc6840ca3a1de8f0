"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``: OpenAI's transcription and
translation APIs, so OpenAI clients work unchanged.

Multipart ``file`` (anything FFmpeg decodes), ``model`` (any name; the server's model answers),
``language``, ``prompt``, ``response_format`` (json, text, verbose_json, srt, vtt) and
``timestamp_granularities[]`` (segment, word), and voxindex's ``diarize`` (true: segments and
words carry ``speaker``; SRT/VTT/text name the speaker), shaped as
https://platform.openai.com/docs/api-reference/audio/createTranscription documents them.
Translations take ``file``, ``model``, ``prompt``, ``response_format`` and give English text
(multilingual models; an English-only one answers 400 ``unsupported_language``).
Errors use OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The file is transcribed offline (30 s windows, the best accuracy the model gives) on a worker
thread, one file at a time beside the live engine, and stored in the transcript index like any
stream, so it is searchable afterwards (its id is in the ``x-voxindex-stream-id`` header).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from voxindex.api.http import ApiError, caller
from voxindex.api.services import running
from voxindex.api.transcripts import to_srt, to_txt, to_vtt
from voxindex.audio import decode_file
from voxindex.errors import AudioDecodeError, VoxError
from voxindex.languages import check_language, check_task
from voxindex.offline import OfflineService
from voxindex.transcribe import Segment, Transcript

router = APIRouter()
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
LANGUAGE_NAMES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian"}


def openai_error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="audio or video in any format FFmpeg reads")],
    model: Annotated[str, Form(description="accepted for compatibility; the server's model answers")] = "",
    language: Annotated[str | None, Form(description="ISO-639-1 code, e.g. en")] = None,
    prompt: Annotated[str, Form(description="text that primes spelling and style")] = "",
    response_format: Annotated[str, Form(description="json | text | verbose_json | srt | vtt")] = "json",
    temperature: Annotated[float, Form(description="accepted; decoding is greedy")] = 0.0,
    timestamp_granularities: Annotated[
        list[str] | None, Form(alias="timestamp_granularities[]", description="segment and/or word")
    ] = None,
    diarize: Annotated[bool, Form(description="voxindex: label segments and words with speakers")] = False,
    stream: Annotated[bool, Form(description="server-sent transcript.text.delta events, then .done")] = False,
) -> Response:
    granularities = set(timestamp_granularities or [])
    asked = Asked(language, prompt, response_format, granularities, diarize, stream=stream)
    return await _offline(request, file, asked)


@router.post("/v1/audio/translations", response_model=None)
async def translations(
    request: Request,
    file: Annotated[UploadFile, File(description="audio or video in any format FFmpeg reads")],
    model: Annotated[str, Form(description="accepted for compatibility; the server's model answers")] = "",
    prompt: Annotated[str, Form(description="English text that primes spelling and style")] = "",
    response_format: Annotated[str, Form(description="json | text | verbose_json | srt | vtt")] = "json",
    temperature: Annotated[float, Form(description="accepted; decoding is greedy")] = 0.0,
) -> Response:
    """English text of speech in any language the model knows (OpenAI's translations API)."""
    asked = Asked(None, prompt, response_format, set(), False, task="translate")
    return await _offline(request, file, asked)


@dataclass(frozen=True)
class Asked:
    """One transcription or translation request's form fields."""

    language: str | None
    prompt: str
    response_format: str
    granularities: set[str]
    diarize: bool
    task: str = "transcribe"
    stream: bool = False  # server-sent events as segments are read (json and text formats)


async def _offline(request: Request, file: UploadFile, asked: Asked) -> Response:
    try:
        principal = caller(request, "transcribe")
    except ApiError as e:
        return openai_error(e.status, e.message, e.code)
    service: OfflineService = running(request.app).offline
    if asked.response_format not in FORMATS:
        return openai_error(
            400, f"response_format must be one of {', '.join(FORMATS)}", "invalid_request", "response_format"
        )
    if not asked.granularities <= {"segment", "word"}:
        return openai_error(
            400,
            "timestamp_granularities[] takes segment and word",
            "invalid_request",
            "timestamp_granularities",
        )
    if asked.stream and (asked.response_format not in ("json", "text") or asked.diarize):
        why = "stream=true gives text events: response_format json or text, without diarize"
        return openai_error(400, why, "invalid_request", "stream")
    if asked.diarize and service.speakers is None:
        return openai_error(
            400, "speaker labels are not available on this server", "speakers_unavailable", "diarize"
        )
    try:
        code = check_language(asked.language or None, service.model.languages)
        check_task(asked.task, service.model.languages)
    except VoxError as e:
        return openai_error(400, e.message, e.code, "model" if asked.task == "translate" else "language")
    if asked.stream:
        return await _streamed(service, file, asked, code, principal.tenant)
    with tempfile.TemporaryDirectory(prefix="voxindex-upload-") as tmp:
        path = await _upload(file, Path(tmp))
        try:
            async with service.turn:
                audio = await asyncio.to_thread(decode_file, path)
                transcript = await asyncio.to_thread(
                    service.transcribe, audio, code, asked.prompt, asked.diarize, asked.task
                )
        except AudioDecodeError as e:
            return openai_error(400, e.message.replace(str(path), file.filename or "file"), e.code, "file")
    stream_id = await asyncio.to_thread(service.store, transcript, principal.tenant)
    headers = {"x-voxindex-stream-id": stream_id} if stream_id else {}
    return _render(transcript, asked, headers)


async def _upload(file: UploadFile, folder: Path) -> Path:
    path = folder / "upload"
    with path.open("wb") as out:
        while chunk := await file.read(1 << 20):
            out.write(chunk)
    return path


async def _streamed(
    service: OfflineService, file: UploadFile, asked: Asked, language: str | None, tenant: str
) -> Response:
    """``stream=true``: a ``transcript.text.delta`` per segment as its window is read, then
    ``transcript.text.done`` with the whole text (the deltas' concatenation), as server-sent
    events. The file is decoded first, so one that is not audio is still a 400."""
    with tempfile.TemporaryDirectory(prefix="voxindex-upload-") as tmp:
        path = await _upload(file, Path(tmp))
        try:
            audio = await asyncio.to_thread(decode_file, path)
        except AudioDecodeError as e:
            return openai_error(400, e.message.replace(str(path), file.filename or "file"), e.code, "file")

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        found: asyncio.Queue[Segment | None] = asyncio.Queue()
        sent = ""

        def tell(segment: Segment | None) -> None:  # from the transcriber's thread
            loop.call_soon_threadsafe(found.put_nowait, segment)

        def run() -> Transcript:
            try:
                return service.transcribe(audio, language, asked.prompt, False, asked.task, tell)
            finally:
                tell(None)

        def delta(text: str) -> list[str]:
            """The event for what ``text`` says past what was sent (none if nothing new)."""
            nonlocal sent
            if not text.startswith(sent) or len(text) <= len(sent):
                return []
            event, sent = {"type": "transcript.text.delta", "delta": text[len(sent) :]}, text
            return [_sse(event)]

        try:
            async with service.turn:
                job = asyncio.ensure_future(asyncio.to_thread(run))
                texts: list[str] = []
                while (segment := await found.get()) is not None:
                    texts.append(segment.text)
                    for event in delta(" ".join(texts).strip()):
                        yield event
                transcript = await job
            for event in delta(transcript.text):
                yield event
            yield _sse({"type": "transcript.text.done", "text": transcript.text})
            await asyncio.to_thread(service.store, transcript, tenant)
        except VoxError as e:
            yield _sse(
                {"error": {"message": e.message, "type": "server_error", "param": None, "code": e.code}}
            )

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy holds them back
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"


def _render(transcript: Transcript, asked: Asked, headers: dict[str, str]) -> Response:
    fmt, granularities = asked.response_format, asked.granularities
    diarized = any(s.speaker is not None for s in transcript.segments)
    if fmt == "text":
        text = to_txt(transcript.segments) if diarized else transcript.text + "\n"
        return PlainTextResponse(text, headers=headers)
    if fmt == "srt":
        return PlainTextResponse(to_srt(transcript.segments), headers=headers)
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(transcript.segments), media_type="text/vtt", headers=headers)
    usage = {"type": "duration", "seconds": round(transcript.duration)}
    if fmt == "json":
        return JSONResponse({"text": transcript.text, "usage": usage}, headers=headers)
    body: dict[str, Any] = {
        "task": asked.task,
        "language": LANGUAGE_NAMES.get(transcript.language or "en", transcript.language or "english"),
        "duration": transcript.duration,
        "text": transcript.text,
        "usage": usage,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": n,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": " " + s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
                **({"speaker": s.speaker} if s.speaker is not None else {}),
            }
            for n, s in enumerate(transcript.segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {
                "word": w.word.strip(),
                "start": w.start,
                "end": w.end,
                **({"speaker": w.speaker} if w.speaker is not None else {}),
            }
            for s in transcript.segments
            for w in s.words
        ]
    return JSONResponse(body, headers=headers)

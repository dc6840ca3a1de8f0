"""``/v1/streams``: a tenant's streams, their transcripts and kept audio, and deleting them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from voxindex.api.http import ApiError, caller, index_of
from voxindex.api.services import running
from voxindex.api.transcripts import FORMATS, to_srt, to_txt, to_vtt
from voxindex.index.records import StreamRecord
from voxindex.index.stream_audio import MEDIA_TYPE, StreamAudio

router = APIRouter()


@router.get("/v1/streams")
def streams(request: Request, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """The caller's tenant's streams, newest first (`search` scope)."""
    principal = caller(request, "search")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ApiError(400, "invalid_request", "limit must be 1..1000 and offset ≥ 0")
    records = index_of(request).list_streams(principal.tenant_filter(), limit=limit, offset=offset)
    audio = running(request.app).audio
    return {"streams": [_stream_json(r, audio) for r in records]}


def _stream_json(record: StreamRecord, audio: StreamAudio | None) -> dict[str, Any]:
    """A stream as listed: ``duration`` (seconds of audio, once it ended) and ``audio`` (its
    audio was kept: ``record=true``, within the retention) beside the stored fields."""
    return {
        **record.__dict__,
        "duration": record.metadata.get("duration"),
        "audio": audio is not None and audio.has(record.id),
    }


@router.get("/v1/streams/{stream_id}/audio", response_model=None)
def stream_audio(request: Request, stream_id: str) -> FileResponse:
    """A ``record=true`` stream's audio, Opus in Ogg on the stream's own timeline (`search`
    scope, own tenant; HTTP range requests work). 404 when none was kept or it has expired."""
    principal = caller(request, "search")
    audio = running(request.app).audio
    if index_of(request).get_stream(stream_id, principal.tenant_filter()) is None:
        raise ApiError(404, "not_found", f"no stream {stream_id[:64]!r}")
    if audio is None or not audio.has(stream_id):
        raise ApiError(404, "not_found", f"no audio kept for stream {stream_id[:64]!r}")
    return FileResponse(audio.path(stream_id), media_type=MEDIA_TYPE, filename=f"{stream_id}.ogg")


@router.get("/v1/streams/{stream_id}/transcript")
def transcript(request: Request, stream_id: str, format: str = "json") -> Response:
    """One stream's final segments as json, txt, srt or vtt (`search` scope, own tenant)."""
    principal = caller(request, "search")
    if format not in FORMATS:
        raise ApiError(400, "invalid_request", f"format must be one of {', '.join(FORMATS)}")
    index = index_of(request)
    record = index.get_stream(stream_id, principal.tenant_filter())
    if record is None:
        raise ApiError(404, "not_found", f"no stream {stream_id[:64]!r}")
    segments = index.segments_of(stream_id)
    if format == "json":
        stream = _stream_json(record, running(request.app).audio)
        return JSONResponse({"stream": stream, "segments": [s.to_json() for s in segments]})
    body = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt}[format](segments)
    return PlainTextResponse(body, media_type=FORMATS[format])


@router.delete("/v1/streams/{stream_id}")
def delete(request: Request, stream_id: str) -> dict[str, Any]:
    """Remove a stream's text, vectors, kept audio and a recording's media (`transcribe` scope,
    own tenant; `admin` any)."""
    principal = caller(request, "transcribe")
    services, tenant = running(request.app), principal.tenant_filter()
    # a recording is a stream too: through its service, so its media file goes with it
    recordings = services.recordings
    if recordings is not None and recordings.delete(stream_id, tenant):
        return {"deleted": stream_id}
    if not index_of(request).delete_stream(stream_id, tenant):
        raise ApiError(404, "not_found", f"no stream {stream_id[:64]!r}")
    if services.audio is not None:
        services.audio.delete(stream_id)
    return {"deleted": stream_id}

"""Search and transcript REST routes over the live index. Every bad input is a 4xx with a message."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from voxindex.api.auth import Authenticator, AuthError, ForbiddenError, Principal
from voxindex.api.services import running
from voxindex.api.transcripts import FORMATS, to_srt, to_txt, to_vtt
from voxindex.index.base import TranscriptIndex
from voxindex.index.search import Mode
from voxindex.index.store import Filters, StreamRecord
from voxindex.index.stream_audio import MEDIA_TYPE, StreamAudio

MAX_QUERY_CHARS = 1000
MAX_K = 100

router = APIRouter()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse({"error": {"code": e.code, "message": e.message}}, status_code=e.status)


def caller(request: Request, scope: str) -> Principal:
    """The caller, holding ``scope``: 401 without a valid credential, 403 without the scope."""
    auth: Authenticator = running(request.app).auth
    try:
        return auth.authenticate(request.headers.get("authorization")).require(scope)
    except AuthError as e:
        raise ApiError(401, e.code, e.message) from None
    except ForbiddenError as e:
        raise ApiError(403, e.code, e.message) from None


def _index(request: Request) -> TranscriptIndex:
    index: TranscriptIndex | None = running(request.app).index
    if index is None:
        raise ApiError(503, "index_disabled", "this server runs without a transcript index")
    return index


def parse_time(raw: str | None, name: str) -> float | None:
    """Unix seconds or ISO 8601 (naive times are UTC)."""
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "invalid_request", f"{name} must be unix seconds or ISO 8601, got {raw[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@router.get("/v1/search")
def search(
    request: Request,
    q: str = Query("", description="what to look for: words, a name, a number, or a paraphrase"),
    k: int = Query(10, description=f"number of hits, 1..{MAX_K}"),
    mode: str = Query("hybrid", description="hybrid | vector | keyword"),
    stream_id: str | None = Query(None),
    since: str | None = Query(None, description="unix seconds or ISO 8601; segments finalized at or after"),
    until: str | None = Query(None, description="unix seconds or ISO 8601; segments finalized before"),
    speaker: int | None = Query(None, description="only diarized segments mostly said by this label"),
) -> dict[str, Any]:
    """Search every final segment of the caller's tenant: keyword (FTS5), vector (MiniLM + FAISS)
    or both fused (RRF). Needs the `search` scope; `admin` searches every tenant."""
    principal = caller(request, "search")
    if not q.strip():
        raise ApiError(400, "invalid_request", "q must not be empty")
    if len(q) > MAX_QUERY_CHARS:
        raise ApiError(400, "invalid_request", f"q is {len(q)} characters; the limit is {MAX_QUERY_CHARS}")
    if not 1 <= k <= MAX_K:
        raise ApiError(400, "invalid_request", f"k must be 1..{MAX_K}, got {k}")
    try:
        search_mode = Mode(mode)
    except ValueError:
        raise ApiError(
            400, "invalid_request", f"mode must be hybrid, vector or keyword, got {mode[:20]!r}"
        ) from None
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start is not None and end is not None and start >= end:
        raise ApiError(400, "invalid_request", "since must be before until")
    if speaker is not None and not 0 <= speaker < 1000:
        raise ApiError(400, "invalid_request", f"speaker must be a label 0..999, got {speaker}")
    filters = Filters(principal.tenant_filter(), stream_id, start, end, speaker)
    index = _index(request)
    started = time.perf_counter()
    hits = index.search(q, k, search_mode, filters)
    elapsed = time.perf_counter() - started
    running(request.app).metrics.search_seconds.labels(search_mode.value).observe(elapsed)
    return {"query": q, "mode": search_mode.value, "hits": [h.to_json() for h in hits]}


@router.get("/v1/streams")
def streams(request: Request, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """The caller's tenant's streams, newest first (`search` scope)."""
    principal = caller(request, "search")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ApiError(400, "invalid_request", "limit must be 1..1000 and offset ≥ 0")
    records = _index(request).list_streams(principal.tenant_filter(), limit=limit, offset=offset)
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
    if _index(request).get_stream(stream_id, principal.tenant_filter()) is None:
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
    index = _index(request)
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
    if not _index(request).delete_stream(stream_id, tenant):
        raise ApiError(404, "not_found", f"no stream {stream_id[:64]!r}")
    if services.audio is not None:
        services.audio.delete(stream_id)
    return {"deleted": stream_id}

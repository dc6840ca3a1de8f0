"""``/v1/recordings``: upload audio or video for background transcription and indexing
(``voxindex.recordings``), list, fetch and delete recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import UploadFile

from voxindex.api.http import ApiError, caller
from voxindex.api.services import running
from voxindex.errors import AudioDecodeError, VoxError
from voxindex.index.records import RecordingRecord
from voxindex.languages import check_task
from voxindex.recordings import NoRoomError, RecordingGoneError, RecordingService

router = APIRouter()
MAX_FILES_PER_REQUEST = 20


def _no_room(e: NoRoomError) -> ApiError:
    return ApiError(507, e.code, e.message)


def _refused(e: AudioDecodeError | RecordingGoneError) -> ApiError:
    """Media the decoder cannot read (400), or a recording deleted as it was added (404)."""
    return ApiError(400 if isinstance(e, AudioDecodeError) else 404, e.code, e.message)


def _service(request: Request) -> RecordingService:
    service: RecordingService | None = running(request.app).recordings
    if service is None:
        raise ApiError(503, "index_disabled", "this server runs without a transcript index")
    return service


@router.post("/v1/recordings", status_code=202, response_model=None)
async def create_recordings(request: Request) -> JSONResponse:
    """Multipart ``file`` (one or more), or JSON ``{"url": "file:///..."}`` under the import dir;
    ``?task=translate``: English text (multilingual models)."""
    principal = caller(request, "transcribe")
    service = _service(request)
    try:
        task = check_task(request.query_params.get("task", "transcribe"), service.languages)
    except VoxError as e:
        raise ApiError(400, e.code, e.message) from None
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        record = await _import(request, service, principal.tenant, task)
        return JSONResponse(record.to_json(), status_code=202)
    if not kind.startswith("multipart/form-data"):
        raise ApiError(415, "invalid_request", "send multipart/form-data with a file, or JSON with a url")
    length = request.headers.get("content-length", "")
    try:
        service.room_for(int(length) if length.isdigit() else 0)  # 507 before the body is read
    except NoRoomError as e:
        raise _no_room(e) from None
    form = await request.form(max_files=MAX_FILES_PER_REQUEST)
    uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not uploads:
        raise ApiError(400, "invalid_request", "no file: send the media in a multipart field named 'file'")
    records = []
    for upload in uploads:
        name = Path(upload.filename or "upload").name or "upload"
        try:
            tmp = await service.keep(upload.read)
        except NoRoomError as e:
            raise _no_room(e) from None
        try:
            records.append(await service.add(tmp, name, principal.tenant, task))
        except (AudioDecodeError, RecordingGoneError) as e:
            tmp.unlink(missing_ok=True)
            raise _refused(e) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if len(records) == 1:
        return JSONResponse(records[0].to_json(), status_code=202)
    return JSONResponse({"recordings": [r.to_json() for r in records]}, status_code=202)


async def _import(request: Request, service: RecordingService, tenant: str, task: str) -> RecordingRecord:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_request", "the body is not JSON") from None
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str):
        raise ApiError(400, "invalid_request", 'JSON uploads need {"url": "file:///path/in/the/import/dir"}')
    root = service.settings.import_dir
    parsed = urlparse(url)
    if root is None or parsed.scheme not in ("file", ""):
        raise ApiError(
            400, "invalid_request", "only file:// URLs inside the server's import dir (--import-dir) are read"
        )
    path = Path(unquote(parsed.path)).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise ApiError(404, "not_found", f"no such file in the import dir: {parsed.path[:200]}")
    if path.stat().st_size > service.settings.max_body_bytes:
        raise ApiError(
            413, "payload_too_large", f"file over the limit of {service.settings.max_body_bytes} bytes"
        )
    try:
        service.room_for(path.stat().st_size)
        copy = await service.copy_in(path)
    except NoRoomError as e:
        raise _no_room(e) from None
    try:
        return await service.add(copy, path.name, tenant, task)
    except (AudioDecodeError, RecordingGoneError) as e:
        copy.unlink(missing_ok=True)
        raise _refused(e) from None
    except BaseException:
        copy.unlink(missing_ok=True)
        raise


@router.get("/v1/recordings")
def list_recordings(request: Request) -> dict[str, Any]:
    principal = caller(request, "search")
    records = _service(request).index.catalog.list_recordings(principal.tenant_filter())
    return {"recordings": [r.to_json() for r in records]}


@router.get("/v1/recordings/{recording_id}")
def get_recording(request: Request, recording_id: str) -> dict[str, Any]:
    principal = caller(request, "search")
    record = _service(request).index.catalog.get_recording(recording_id, principal.tenant_filter())
    if record is None:
        raise ApiError(404, "not_found", f"no recording {recording_id}")
    return record.to_json()


@router.get("/v1/recordings/{recording_id}/media", response_model=None)
def get_media(request: Request, recording_id: str) -> FileResponse:
    """The uploaded file, for playing a search hit from its ``start`` (HTTP range requests work)."""
    principal = caller(request, "search")
    record = _service(request).index.catalog.get_recording(recording_id, principal.tenant_filter())
    if record is None or not Path(record.media).exists():
        raise ApiError(404, "not_found", f"no media for recording {recording_id}")
    return FileResponse(record.media, filename=record.filename)


@router.delete("/v1/recordings/{recording_id}")
def delete_recording(request: Request, recording_id: str) -> dict[str, Any]:
    principal = caller(request, "transcribe")
    if not _service(request).delete(recording_id, principal.tenant_filter()):
        raise ApiError(404, "not_found", f"no recording {recording_id}")
    return {"deleted": recording_id}

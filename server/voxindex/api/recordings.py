"""``/v1/recordings``: upload audio or video for background transcription and indexing.

An upload is checked (it must be media with an audio track the decoder reads), stored under
``<data-dir>/media``, and answered ``202`` at once. A worker thread decodes it (PyAV) and finds
its speech (Silero VAD); the engine then reads it in windows in the room live streams leave
(engine/recordings.py). Identical content (SHA-256) is transcribed once: a second upload reuses
the transcript. Unfinished recordings resume after a restart from their last committed window.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import av
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import UploadFile

from voxindex.api.rest import ApiError, caller
from voxindex.api.services import running
from voxindex.audio import check_wav_complete, decode_file
from voxindex.config import Settings
from voxindex.engine.recordings import Recordings, RecordingWork, plan_windows
from voxindex.engine.speakers import Speakers, diarize_recording
from voxindex.engine.vad import Vad, VadState
from voxindex.errors import AudioDecodeError, StoreUnavailableError, VoxError
from voxindex.index.base import TranscriptIndex
from voxindex.index.health import StoreHealth
from voxindex.index.store import RecordingRecord
from voxindex.languages import ENGLISH, check_task

log = logging.getLogger("voxindex.api")
router = APIRouter()
MAX_FILES_PER_REQUEST = 20


class RecordingService:
    """Uploads in, prepared work out to the engine; the store keeps every status."""

    def __init__(
        self,
        settings: Settings,
        model: str,
        index: TranscriptIndex,
        recordings: Recordings,
        health: StoreHealth | None = None,
        speakers: Speakers | None = None,
        languages: frozenset[str] = ENGLISH,
    ) -> None:
        self.settings = settings
        self.languages = languages  # the model's: a translation needs a multilingual one
        self.speakers = speakers  # recordings are diarized whenever the speaker encoder is here
        self.health = health
        self.model = model
        self.index = index
        self.recordings = recordings
        self.media_dir = settings.data_dir / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._vad = Vad()
        self._turn = asyncio.Semaphore(1)  # one decode + VAD at a time beside the engine
        self._tasks: set[asyncio.Task[None]] = set()

    def resume(self) -> None:
        """Queue again what a restart interrupted; committed windows are not read twice."""
        for record in self.index.catalog.unfinished_recordings():
            self._schedule(record)

    async def add(
        self, source: Path, filename: str, tenant: str, task: str = "transcribe"
    ) -> RecordingRecord:
        """Check, hash and keep ``source`` (a temporary file this call may move), then queue it."""
        await asyncio.to_thread(probe, source, filename)
        sha256 = await asyncio.to_thread(file_sha256, source)
        recording_id = uuid.uuid4().hex
        media = self.media_dir / f"{recording_id}{Path(filename).suffix.lower()[:10]}"
        await asyncio.to_thread(shutil.move, str(source), media)
        store = self.index.catalog
        try:
            store.create_recording(recording_id, tenant, filename, sha256, str(media), self.model, task)
        except StoreUnavailableError:  # not recorded: keep no media nobody can find
            media.unlink(missing_ok=True)
            raise
        earlier = store.indexed_recording(sha256, task)
        if earlier is not None:  # identical content: reuse its transcript
            self.index.reuse_transcript(earlier.id, recording_id)
            store.update_recording(
                recording_id,
                status="indexed",
                duration=earlier.duration,
                language=earlier.language,
                reused_from=earlier.id,
            )
            self.index.close_stream(recording_id)
        else:
            self._schedule(store.get_recording(recording_id) or _missing(recording_id))
        return store.get_recording(recording_id) or _missing(recording_id)

    def room_for(self, size: int) -> None:
        """ApiError 507 ``store_unavailable`` unless ``size`` bytes of media fit on the data
        directory's filesystem and leave the store's reserve free."""
        if self.health is not None:
            try:
                self.health.room_for(size, self.media_dir)
            except StoreUnavailableError as e:
                raise _no_room(e.message) from None

    async def keep(self, upload: UploadFile) -> Path:
        """Copy an uploaded file under the media directory; 507 if the disk cannot hold it."""
        with tempfile.NamedTemporaryFile(dir=self.media_dir, prefix=".upload-", delete=False) as tmp:
            try:
                while chunk := await upload.read(1 << 20):
                    tmp.write(chunk)
                tmp.flush()
            except OSError as e:  # ENOSPC, EROFS, EIO: nothing half-written is kept
                Path(tmp.name).unlink(missing_ok=True)
                raise _no_room(f"the recording could not be stored: {e.strerror or e}") from None
        return Path(tmp.name)

    def delete(self, recording_id: str, tenant: str | None) -> bool:
        record = self.index.catalog.get_recording(recording_id, tenant)
        if record is None:
            return False
        self.recordings.cancel(recording_id)
        self.index.delete_stream(recording_id, tenant)
        Path(record.media).unlink(missing_ok=True)
        return True

    def _schedule(self, record: RecordingRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._prepare(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare(self, record: RecordingRecord) -> None:
        try:
            async with self._turn:
                work = await asyncio.to_thread(self._work, record)
        except AudioDecodeError as e:
            reason = e.message.replace(record.media, record.filename)
            self.index.catalog.update_recording(record.id, status="failed", reason=reason)
            return
        except Exception as e:  # never a stuck job: anything unexpected fails the recording
            log.exception("preparing recording %s failed", record.id)
            self.index.catalog.update_recording(
                record.id, status="failed", reason=f"{e.__class__.__name__}: {e}"
            )
            return
        if self.index.catalog.get_recording(record.id) is not None:  # not deleted meanwhile
            self.recordings.submit(work)

    def _work(self, record: RecordingRecord) -> RecordingWork:
        audio = decode_file(record.media)
        duration = round(audio.size / 16000, 3)
        speech = self._vad([VadState()], [audio])[0]
        windows = [w for w in plan_windows(speech, duration) if w.end > record.done_s + 1e-3]
        self.index.catalog.update_recording(record.id, status="transcribing", duration=duration)
        timeline = diarize_recording(self.speakers, audio, speech) if self.speakers else None
        return RecordingWork(
            record.id,
            audio,
            windows,
            language=None,
            segments=record.segments,
            speakers=timeline,
            task=record.task,
        )


def _no_room(message: str) -> ApiError:
    return ApiError(507, StoreUnavailableError.code, message)


def _missing(recording_id: str) -> RecordingRecord:
    raise ApiError(404, "not_found", f"no recording {recording_id}")


def probe(path: Path, filename: str) -> None:
    """Media with an audio track the decoder can read, or AudioDecodeError saying what is wrong."""
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{filename}: file is empty")
    try:
        check_wav_complete(path)
    except AudioDecodeError as e:
        raise AudioDecodeError(e.message.replace(str(path), filename)) from None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{filename}: has no audio track")
            stream = container.streams.audio[0]
            for n, _ in enumerate(container.decode(stream)):
                if n >= 4:  # a few frames decode: the codec is supported and the data is audio
                    break
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise AudioDecodeError(
            f"{filename}: not a readable audio or video file ({e.__class__.__name__})"
        ) from e


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------- routes ----------------
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
    service.room_for(int(length) if length.isdigit() else 0)  # 507 before the body is read
    form = await request.form(max_files=MAX_FILES_PER_REQUEST)
    uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not uploads:
        raise ApiError(400, "invalid_request", "no file: send the media in a multipart field named 'file'")
    records = []
    for upload in uploads:
        name = Path(upload.filename or "upload").name or "upload"
        tmp = await service.keep(upload)
        try:
            records.append(await service.add(tmp, name, principal.tenant, task))
        except AudioDecodeError as e:
            tmp.unlink(missing_ok=True)
            raise ApiError(400, e.code, e.message) from None
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
    service.room_for(path.stat().st_size)
    copy = service.media_dir / f".import-{uuid.uuid4().hex}"
    try:
        await asyncio.to_thread(shutil.copyfile, path, copy)
    except OSError as e:
        copy.unlink(missing_ok=True)
        raise _no_room(f"the recording could not be stored: {e.strerror or e}") from None
    try:
        return await service.add(copy, path.name, tenant, task)
    except AudioDecodeError as e:
        copy.unlink(missing_ok=True)
        raise ApiError(400, e.code, e.message) from None
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

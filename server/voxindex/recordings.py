"""Recordings: audio or video uploaded for background transcription and indexing.

An upload is checked (it must be media with an audio track the decoder reads), stored under
``<data-dir>/media``, and answered ``202`` at once. A worker thread decodes it (PyAV) and finds
its speech (Silero VAD); the engine then reads it in windows in the room live streams leave
(engine/recordings.py). Identical content (SHA-256) is transcribed once: a second upload reuses
the transcript. Unfinished recordings resume after a restart from their last committed window.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import av

from voxindex.audio import check_wav_complete, decode_file
from voxindex.config import Settings
from voxindex.engine.recordings import Recordings, RecordingWork, plan_windows
from voxindex.engine.speakers.labeller import Speakers, diarize_recording
from voxindex.engine.vad import Vad, VadState
from voxindex.errors import AudioDecodeError, StoreUnavailableError, VoxError
from voxindex.index.base import TranscriptIndex
from voxindex.index.health import StoreHealth
from voxindex.index.records import RecordingRecord
from voxindex.languages import ENGLISH

log = logging.getLogger("voxindex.recordings")


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
        """NoRoomError unless ``size`` bytes of media fit on the data directory's filesystem
        and leave the store's reserve free."""
        if self.health is not None:
            try:
                self.health.room_for(size, self.media_dir)
            except StoreUnavailableError as e:
                raise NoRoomError(e.message) from None

    async def keep(self, read: Callable[[int], Awaitable[bytes]]) -> Path:
        """Copy an upload (``read(n)``: its next bytes) under the media directory; NoRoomError if
        the disk cannot hold it."""
        with tempfile.NamedTemporaryFile(dir=self.media_dir, prefix=".upload-", delete=False) as tmp:
            try:
                while chunk := await read(1 << 20):
                    tmp.write(chunk)
                tmp.flush()
            except OSError as e:  # ENOSPC, EROFS, EIO: nothing half-written is kept
                Path(tmp.name).unlink(missing_ok=True)
                raise NoRoomError(f"the recording could not be stored: {e.strerror or e}") from None
        return Path(tmp.name)

    async def copy_in(self, path: Path) -> Path:
        """Copy a file from the import directory under the media directory."""
        copy = self.media_dir / f".import-{uuid.uuid4().hex}"
        try:
            await asyncio.to_thread(shutil.copyfile, path, copy)
        except OSError as e:
            copy.unlink(missing_ok=True)
            raise NoRoomError(f"the recording could not be stored: {e.strerror or e}") from None
        return copy

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


class NoRoomError(StoreUnavailableError):
    """The data directory cannot hold the media (HTTP 507)."""


class RecordingGoneError(VoxError):
    """The recording was deleted while it was being added (HTTP 404)."""

    code = "not_found"


def _missing(recording_id: str) -> RecordingRecord:
    raise RecordingGoneError(f"no recording {recording_id}")


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

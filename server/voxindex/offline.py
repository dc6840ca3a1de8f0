"""Whole files transcribed offline on the live engine's model (OpenAI's REST routes use it), and
stored as a stream of finals so they are searchable like any other."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

from voxindex.audio import Float32Array
from voxindex.engine.events import Final
from voxindex.engine.speakers.labeller import Speakers, diarize_recording
from voxindex.engine.speakers.timeline import dominant
from voxindex.engine.vad import Vad, VadState
from voxindex.index.base import TranscriptIndex
from voxindex.models.whisper import WhisperModel
from voxindex.transcribe import OfflineTranscriber, Segment, Transcript


class OfflineService:
    """One offline transcriber sharing the live engine's model; one file at a time."""

    def __init__(
        self, model: WhisperModel, index: TranscriptIndex | None, speakers: Speakers | None = None
    ) -> None:
        self.model = model
        self.index = index
        self.speakers = speakers
        self._transcriber: OfflineTranscriber | None = None
        self._vad: Vad | None = None  # for diarized files, loaded at the first
        self._lock = threading.Lock()
        self.turn = asyncio.Semaphore(1)

    def transcribe(
        self,
        audio: Float32Array,
        language: str | None,
        prompt: str,
        diarize: bool = False,
        task: str = "transcribe",
        found_segment: Callable[[Segment], None] | None = None,
    ) -> Transcript:
        """``audio``: a decoded file (``audio.decode_file``); ``found_segment``: told of each
        segment as it is read (before speakers are labelled)."""
        with self._lock:
            if self._transcriber is None:
                self._transcriber = OfflineTranscriber(self.model)
            transcript = self._transcriber.transcribe(
                audio, language, words=True, prompt_text=prompt, task=task, found_segment=found_segment
            )
            if diarize and self.speakers is not None:
                self._vad = self._vad or Vad()
                speech = self._vad([VadState()], [audio])[0]
                timeline = diarize_recording(self.speakers, audio, speech)
                for s in transcript.segments:
                    s.words = timeline.label(s.words)
                    s.speaker = dominant(s.words)
        return transcript

    def store(self, transcript: Transcript, tenant: str) -> str | None:
        if self.index is None:
            return None
        stream_id = uuid.uuid4().hex
        self.index.open_stream(stream_id, self.model.name, tenant)
        for n, s in enumerate(transcript.segments):
            final = Final(n, s.text, s.start, s.end, list(s.words), transcript.language, "file", s.speaker)
            self.index.commit(stream_id, final, self.model.name)
        self.index.close_stream(stream_id)
        return stream_id

"""The one loop that owns the model and serves every live stream at once.

``Scheduler.step()`` is *ingest → schedule → execute → update*: take new audio and VAD
decisions for every stream, pick the streams that need a reading (finalizations first, then
the most-lagging interim readings) and admit them into free decode slots with one encoder
pass, run one decode step for every reading in flight, and turn the readings that finished
into interim and final events. Readings join and leave the decode batch at any step
(continuous batching): a final that becomes due never waits for a batch to drain. Under load
each stream's interim readings come less often, so finals stay prompt. Recordings
(background work) fill the slots live streams leave. Handlers never call the model; a slow
client only ever slows itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np
import torch

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.config import Settings
from voxindex.engine.align import Word
from voxindex.engine.events import Closed, Error, Event, Final, Interim, SpeechEnded, SpeechStarted
from voxindex.engine.executor import MAX_WINDOW_AUDIO_S, Executor, Job, Reading
from voxindex.engine.policy import agreed_prefix, final_words, join_words, last_sentence_end
from voxindex.engine.prompting import PromptBuilder
from voxindex.engine.recordings import Recordings, RecordingWork, Window
from voxindex.engine.speaker_labels import dominant
from voxindex.engine.speaker_worker import SpeakerWorker
from voxindex.engine.speakers import Speakers
from voxindex.engine.stream import PREROLL_S, FinalizeReason, Stream, StreamOptions, StreamStatus
from voxindex.engine.vad import CHUNK, CHUNK_S, Vad, VadState
from voxindex.errors import (
    CapacityError,
    QuotaError,
    SpeakersUnavailableError,
    StoreUnavailableError,
    VoxError,
)
from voxindex.metrics import Metrics
from voxindex.models.loader import WhisperModel

log = logging.getLogger("voxindex.engine")

MAX_UTTERANCE_S = 25.0  # force a final before the window (30 s) is full
SENTENCE_FINAL_AFTER_S = 8.0  # in long unbroken speech, finalize confirmed sentences past this
ENDPOINT_TAIL_S = 0.3  # audio kept after the last voiced chunk when reading an ended utterance
MAX_INGEST_S = 10.0  # audio taken from one stream's inbox per step
ADMISSION_MAX_LAG_S = 8.0  # refuse new streams while the engine is this far behind
INTERIM_SHARE = 0.6  # of the engine's time, the most interim readings may take under load
# While readings are in flight, the work over every stream (ingest, VAD, scheduling, closing)
# runs at most this often; decode steps run in between. On a GPU a decode step takes a few ms
# and a thousand streams' host work more than that: doing it every step would idle the GPU.
# On a CPU a decode step takes longer than this, so every step is a host turn.
HOST_INTERVAL_S = 0.02
# An admission's encoder pass stalls every reading in flight; while a final is decoding,
# interim readings join only if their encoder pass stalls it less than this (on a GPU).
FINAL_STALL_S = 0.03


class TranscriptSink(Protocol):
    """Where finals go before they are sent (the transcript index). Called on the engine thread.

    ``commit`` must not block on a remote store: a store that acknowledges later (Milvus) keeps
    the final in a local journal, and ``deliver`` runs ``send`` once everything committed for
    the stream so far is acknowledged; an embedded store acknowledges at once.
    """

    def open_stream(self, stream_id: str, model: str, tenant: str) -> None: ...

    def commit(self, stream_id: str, final: Final, model: str) -> int: ...

    def deliver(self, stream_id: str, send: Callable[[], None]) -> None: ...

    def close_stream(self, stream_id: str, duration: float | None = None) -> None: ...


def _average(old: float, new: float) -> float:
    return new if old <= 0 else 0.8 * old + 0.2 * new


@dataclass
class StepStats:
    steps: int = 0
    batches: int = 0  # decode steps
    decode_rows: int = 0  # rows over all decode steps: tokens decoded
    batch_items: int = 0  # readings admitted
    last_step_s: float = 0.0
    encode_cost: float = 0.0  # moving average: encoder seconds per admitted live reading
    recording_cost: float = 0.0  # the same, for a recording window (30 s windows cost more)
    reading_cost: float = 0.0  # moving average: engine seconds per finished reading, all included
    recent_batches: deque[int] = field(default_factory=lambda: deque(maxlen=100))  # rows per decode step
    _busy_s: float = 0.0
    _readings: int = 0

    def observe_readings(self, busy_s: float, finished: int) -> None:
        """Engine time spent and readings finished in one step; averaged over ≥ 4 readings."""
        self._busy_s += busy_s
        self._readings += finished
        if self._readings >= 4:
            self.reading_cost = _average(self.reading_cost, self._busy_s / self._readings)
            self._busy_s, self._readings = 0.0, 0


@dataclass
class _Track:
    """Scheduler-private bookkeeping of one stream (VAD decisions not yet interpreted)."""

    decisions: deque[tuple[float, float]] = field(default_factory=deque)  # (probability, chunk end time)
    vad_samples: int = 0
    heard: float = 0.0  # stream time up to which VAD decisions are interpreted
    seen: int = -1  # ``Stream.received`` when speech was last tracked
    final_until: float = 0.0


class Scheduler:
    def __init__(
        self,
        wm: WhisperModel,
        settings: Settings,
        sink: TranscriptSink | None = None,
        recordings: Recordings | None = None,
        metrics: Metrics | None = None,
        speakers: Speakers | None = None,
    ) -> None:
        self.wm = wm
        self.speakers = SpeakerWorker(speakers) if speakers is not None else None  # diarize
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.max_batch = settings.max_batch if settings.batching else 1
        self.executor = Executor(wm, slots=self.max_batch)
        self.vad = Vad(wm.device)
        self.sink = sink
        self.recordings = recordings
        self.stats = StepStats()
        self.streams: dict[str, Stream] = {}
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()  # the loop's last turn: liveness
        self._ingested_s = self._model_s = self._recording_audio_s = 0.0  # this step's work
        self._live: dict[int, tuple[Stream, Job, bool]] = {}  # reading key → (stream, job, is final)
        self._recording: dict[int, int] = {}  # reading key → index in the recording batch
        self._recording_batch: list[tuple[RecordingWork, Window, Job]] = []
        self._recording_readings: dict[int, Reading] = {}
        self._waiting = 0  # live readings due that did not get a slot this step
        self._host_turn = 0.0  # when the work over every stream last ran
        self._admitted_s = 0.0  # encoder time since the last decode step

    # ---------------- lifecycle ----------------
    def start(self) -> None:
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        self._running = True
        if self.speakers is not None:
            self.speakers.start()
        self._thread = threading.Thread(target=self._loop, name="voxindex-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish every open stream (finals are stored), then stop the loop."""
        for s in list(self.streams.values()):
            s.request_close()
        deadline = time.monotonic() + timeout
        while self.streams and time.monotonic() < deadline and self._thread is not None:
            self.wake()
            time.sleep(0.05)
        self._running = False
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.speakers is not None:
            self.speakers.stop()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def open(
        self, options: StreamOptions, loop: asyncio.AbstractEventLoop, tenant: str = "default"
    ) -> Stream:
        """Admit a new stream, or raise CapacityError (the server is full: 1013) or QuotaError
        (the tenant has its most concurrent streams: 4429)."""
        if options.diarize and self.speakers is None:
            raise SpeakersUnavailableError(
                "speaker labels (diarize) are not available on this server: the speaker encoder's "
                "weights are not installed (pip install --no-deps resemblyzer==0.1.4)"
            )
        with self._lock:
            if len(self.streams) >= self.settings.max_streams:
                raise CapacityError(f"server is at its limit of {self.settings.max_streams} streams")
            quota = self.settings.max_streams_per_tenant
            if quota and sum(s.tenant == tenant for s in self.streams.values()) >= quota:
                raise QuotaError(f"tenant {tenant!r} already has its limit of {quota} concurrent streams")
            if self.lag > ADMISSION_MAX_LAG_S:
                raise CapacityError(f"engine is {self.lag:.1f} s behind real time; try again shortly")
            stream = Stream(options, loop, max_inbox_s=self.settings.max_queue_s, tenant=tenant)
            if self.settings.replica_id:  # which replica served it, visible in every id
                stream.id = f"{self.settings.replica_id}-{stream.id}"
            self.streams[stream.id] = stream
            self._tracks[stream.id] = _Track()
        if self.sink is not None:
            try:
                self.sink.open_stream(stream.id, self.wm.name, stream.tenant)
            except BaseException:  # not stored, not admitted: the slot and the quota are free again
                with self._lock:
                    del self.streams[stream.id], self._tracks[stream.id]
                raise
        return stream

    @property
    def lag(self) -> float:
        """How far the engine is behind real time: the worst stream's ``behind``, in seconds.

        A client sending faster than real time builds up unread audio of its own making; that
        is not the engine falling behind and must not close admission for everyone else.
        """
        return max((s.behind for s in list(self.streams.values())), default=0.0)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def warm_up(self, audio: Float32Array, batch: int = 2) -> Reading:
        """Run the model once, before the loop starts, on real speech at a real batch size:
        first calls allocate, pick kernels and fill caches, so the first client does not wait
        for that. Returns the reading, which the caller may check."""
        self.vad([VadState()], [audio])
        jobs = [Job(audio=audio, start=0.0, prompt=(), language=None)] * max(1, min(batch, self.max_batch))
        readings = self.executor.warm_up(jobs)
        self.stats.encode_cost = self.executor.timing.encode_s / len(jobs)
        return readings[0]

    def _loop(self) -> None:
        while self._running:
            self.heartbeat = time.monotonic()
            try:
                worked = self.step()
            except Exception:  # the loop must outlive any one bad step
                log.exception("engine step failed")
                worked = False
            if not worked:
                with self._wake:
                    self._wake.wait(timeout=0.05)

    # ---------------- the step ----------------
    def step(self) -> bool:
        """One engine step. Returns whether anything happened (else the loop sleeps until woken)."""
        started = time.perf_counter()
        host = self._host_turn_due(started)
        ingested = admitted = background = False
        if host:
            streams = [s for s in list(self.streams.values()) if not s.is_finished]
            ingested = self._ingest(streams)
            admitted = self._admit(self._schedule(streams))
            background = self._admit_recordings()
        readings = self._execute()
        for (stream, job, final), reading in readings:
            self._update(stream, job, reading, final)
        finished = self._finish() if host or readings else False
        self._record(started, len(readings))
        return ingested or admitted or background or bool(readings) or finished or len(self.executor) > 0

    def _host_turn_due(self, now: float) -> bool:
        """Whether this step does the work over every stream: always when nothing is decoding,
        else every ``HOST_INTERVAL_S``."""
        if len(self.executor) and now - self._host_turn < HOST_INTERVAL_S:
            return False
        self._host_turn = now
        return True

    # ---------------- ingest: audio, VAD, endpoints ----------------
    def _ingest(self, streams: list[Stream]) -> bool:
        # audio the stream's VAD decisions have not been interpreted for yet stays in the inbox,
        # so a stream ahead of its readings holds at most MAX_INGEST_S here and backpressure
        # reaches its client
        waiting = [s for s in streams if s.has_inbox]
        fresh = [s.take_inbox(self._ingest_room(s)) for s in waiting]
        heard = [(s, audio) for s, audio in zip(waiting, fresh, strict=True) if audio.size]
        for s, audio in heard:
            s.append_audio(audio)
        self._ingested_s = sum(a.size for _, a in heard) / SAMPLE_RATE
        if self._ingested_s:
            self.metrics.audio_seconds.labels("live").inc(self._ingested_s)
        gated = [(s, audio) for s, audio in heard if s.options.vad]
        probs = self.vad([s.vad for s, _ in gated], [audio for _, audio in gated])
        by_id = {s.id: p for (s, _), p in zip(gated, probs, strict=True)}
        for s, audio in heard:
            track = self._tracks[s.id]
            if s.options.vad:
                p = by_id[s.id]
            else:
                n = (track.vad_samples % CHUNK + audio.size) // CHUNK
                p = np.ones(n, np.float32)
            for k, prob in enumerate(p):
                track.decisions.append(
                    (float(prob), (track.vad_samples // CHUNK + k + 1) * CHUNK / SAMPLE_RATE)
                )
            track.vad_samples += len(p) * CHUNK
            if s.speakers is not None and self.speakers is not None and len(p):
                self._hear_speakers(s, p, track.vad_samples)
        # a stream with no new audio has nothing to interpret, unless decisions wait (behind a
        # final) or a flush was asked for: at a thousand streams, skipping it is most of a turn
        for s in streams:
            track = self._tracks[s.id]
            if track.decisions or s.flush_at is not None or s.received != track.seen:
                track.seen = s.received
                self._track_speech(s, track)
        return bool(heard)

    def _hear_speakers(self, s: Stream, probs: Float32Array, vad_samples: int) -> None:
        """Hand a diarized stream's new VAD chunks, with their audio, to the speaker windows."""
        assert s.speakers is not None and self.speakers is not None
        first = vad_samples - len(probs) * CHUNK
        audio = s.audio_between(first / SAMPLE_RATE, vad_samples / SAMPLE_RATE)
        if audio.size != len(probs) * CHUNK:  # not held any more (cannot happen while ingesting)
            return
        ends = (first / CHUNK + np.arange(1, len(probs) + 1, dtype=np.float64)) * CHUNK_S
        chunks = audio.reshape(-1, CHUNK).copy()  # a view would keep the stream's old buffer alive
        self.speakers.hear(s.speakers, chunks, probs.copy(), ends)

    def _ingest_room(self, s: Stream) -> int:
        """Audio the engine takes from a stream's inbox this step: at most MAX_INGEST_S ahead of
        its interpreted VAD decisions, and never more than a model window held (a final in
        flight for several steps must not let the buffer grow past what it can read)."""
        pending = len(self._tracks[s.id].decisions) * CHUNK
        held = int(MAX_WINDOW_AUDIO_S * SAMPLE_RATE) - s.audio.size
        return max(0, min(int(MAX_INGEST_S * SAMPLE_RATE) - pending, held))

    def _track_speech(self, s: Stream, track: _Track) -> None:
        """Interpret queued VAD decisions, pausing while an utterance awaits its final."""
        while s.finalize is None and track.decisions:
            prob, t = track.decisions.popleft()
            track.heard = t
            began, ended = s.tracker.update(prob, t)
            if began is not None:
                s.in_utterance = True
                s.drop_audio_before(max(s.audio_start, began - PREROLL_S))
                s.confirmed, s.tail, s.heard_words, s.said = [], [], None, []
                s.hypothesis_until = s.audio_start
                s.onset_arrived = s.arrived_at(began)
                self._send(s, SpeechStarted(round(began, 3)))
            if ended is not None and s.in_utterance:
                self._request_final(s, track, FinalizeReason.ENDPOINT, ended)
            elif s.in_utterance and t - s.audio_start >= MAX_UTTERANCE_S:
                self._request_final(s, track, FinalizeReason.WINDOW, t)
        if not s.in_utterance and s.finalize is None:
            s.drop_audio_before(track.heard - PREROLL_S)
        if s.take_flush() and s.in_utterance and s.finalize is None:
            self._request_final(s, track, FinalizeReason.FLUSH, track.heard)

    def _request_final(self, s: Stream, track: _Track, reason: FinalizeReason, until: float) -> None:
        s.finalize = reason
        s.speech_end = until
        track.final_until = until + (ENDPOINT_TAIL_S if reason == FinalizeReason.ENDPOINT else 0.0)

    # ---------------- schedule ----------------
    def _schedule(self, streams: list[Stream]) -> list[tuple[Stream, Job, bool]]:
        """Finalizations that need a fresh reading first, then interim readings by lag, as many
        as there are free slots and encoder time in one step's budget. A stream has at most one
        reading in flight."""
        self._drop_stale_interims()
        busy = {id(stream) for stream, _, _ in self._live.values()}
        idle = [s for s in streams if id(s) not in busy]
        urgent = [s for s in idle if s.finalize is not None and not self._reading_is_fresh(s)]
        interval = self._interim_interval(streams)
        ready = [
            s
            for s in idle
            if s.finalize is None
            and s.in_utterance
            and self._tracks[s.id].heard - max(s.hypothesis_until, s.audio_start) >= interval
        ]
        ready.sort(key=lambda s: (s.behind, s.lag), reverse=True)  # real-time clients before floods
        free = self.executor.free
        urgent = urgent[:free]
        # every admission's encoder pass stalls the readings in flight: while a final is being
        # decoded, interim readings join it only where encoding them costs little (a GPU)
        finals_in_flight = any(final for _, _, final in self._live.values())
        room = self._stall_allowance() if finals_in_flight else self._admissions_in_budget()
        spare = max(0, min(free, room) - len(urgent))
        chosen = urgent + ready[:spare]
        self._waiting = len(urgent) + len(ready) - len(chosen)
        return [(s, self._job(s), s.finalize is not None) for s in chosen]

    def _drop_stale_interims(self) -> None:
        """A stream whose final became due while an interim reading of it is in flight gets its
        final reading now: the interim is dropped, unless it already hears the whole utterance
        (then, accepted, it serves as the final: ``_reading_is_fresh``)."""
        for key, (s, job, final) in list(self._live.items()):
            if final or s.finalize is None:
                continue
            hears_end = job.start + job.audio.size / SAMPLE_RATE >= (s.speech_end or 0.0) + 0.1
            if s.finalize == FinalizeReason.ENDPOINT and hears_end:
                continue
            self.executor.cancel([key])
            del self._live[key]

    def _admissions_in_budget(self) -> int:
        """How many readings one encoder pass may take so a step stays within its time budget:
        every reading in flight waits for it. On a GPU an encoder pass costs little and the
        batch fills to ``max_batch``."""
        if self.stats.encode_cost <= 0:
            return self.max_batch
        return max(1, int(self.settings.step_budget_s / self.stats.encode_cost))

    def _stall_allowance(self) -> int:
        """Readings whose encoder pass stalls a final in flight by under ``FINAL_STALL_S``."""
        return 0 if self.stats.encode_cost <= 0 else int(FINAL_STALL_S / self.stats.encode_cost)

    def _interim_interval(self, streams: list[Stream]) -> float:
        """Seconds of new audio between a stream's interim readings. Under load the interval
        stretches so interim readings take at most ``INTERIM_SHARE`` of the engine's time and
        finals never queue behind them; when the engine keeps up it is ``step_audio_s``."""
        speaking = sum(s.in_utterance for s in streams)
        load = speaking * self.stats.reading_cost / INTERIM_SHARE
        return max(self.settings.step_audio_s, load)

    def _reading_is_fresh(self, s: Stream) -> bool:
        """Whether the latest reading already heard the whole utterance and was accepted, so no
        model call is needed."""
        return (
            s.finalize == FinalizeReason.ENDPOINT
            and s.speech_end is not None
            and s.heard_words is not None
            and s.hypothesis_until >= s.speech_end + 0.1
        )

    def _job(self, s: Stream) -> Job:
        track = self._tracks[s.id]
        until = track.final_until if s.finalize is not None else track.heard
        until = min(until, s.audio_start + MAX_WINDOW_AUDIO_S, s.now)
        return Job(
            audio=s.audio_between(s.audio_start, until),
            start=s.audio_start,
            prompt=self._prompt(s),
            language=s.language or s.options.language,
            task=s.options.task,
            prompting=s.prompting,
        )

    def _prompt(self, s: Stream) -> tuple[int, ...]:
        """Key terms, conversation context and the stream's own finals since either last changed
        (engine/prompting.py)."""
        prompting = s.prompting
        if prompting.epoch != s.prompt_epoch:  # key terms or context changed: past text restarts
            s.prompt_epoch = prompting.epoch
            s.prompt.clear()
        if s.prompter is None:
            s.prompter = PromptBuilder(self.wm.tokenizer)
        return s.prompter(prompting, s.prompt)

    # ---------------- execute: admission and one decode step ----------------
    def _admit(self, batch: list[tuple[Stream, Job, bool]]) -> bool:
        if not batch:
            return False
        try:
            keys = self.executor.admit([job for _, job, _ in batch])
        except Exception as e:  # fail these streams, never the loop or other streams
            log.exception("model admission failed")
            self._fail([stream for stream, _, _ in batch], e)
            return True
        for key, item in zip(keys, batch, strict=True):
            self._live[key] = item
        self.stats.encode_cost = _average(self.stats.encode_cost, self.executor.timing.encode_s / len(batch))
        self.stats.batch_items += len(batch)
        self._observe("live", "encode", len(batch), sum(job.audio.size for _, job, _ in batch))
        return True

    def _execute(self) -> list[tuple[tuple[Stream, Job, bool], Reading]]:
        """One decode step for every reading in flight; live readings that finished."""
        if not len(self.executor):
            return []
        rows = len(self.executor)
        try:
            finished = self.executor.step()
        except Exception as e:  # every reading in flight is lost: fail their streams, not the loop
            log.exception("decode step failed")
            self.executor.cancel()
            self._fail([stream for stream, _, _ in self._live.values()], e)
            self._live.clear()
            self._fail_recordings(e)
            return []
        self.stats.batches += 1
        self.stats.decode_rows += rows
        self.stats.recent_batches.append(rows)
        self._observe("live", "decode", rows, 0)
        self.stats.observe_readings(self.executor.timing.decode_s + self._admitted_s, len(finished))
        self._admitted_s = 0.0
        out = []
        for key, reading in finished:
            if key in self._live:
                out.append((self._live.pop(key), reading))
            elif key in self._recording:
                self._recording_readings[self._recording.pop(key)] = reading
        self._complete_recordings()
        return out

    def _fail(self, streams: list[Stream], e: Exception) -> None:
        for stream in streams:
            stream.emit(Error("engine_error", f"transcription failed: {e.__class__.__name__}"))
            stream.status = StreamStatus.FINISHED

    # ---------------- background: recordings in the room live streams leave ----------------
    def _admit_recordings(self) -> bool:
        """Recording windows fill what live streams leave: free slots no live reading is waiting
        for, and only while no final is pending. One batch of windows at a time, so a
        recording's windows complete in order. Finals always first."""
        if self.recordings is None or self._recording_batch:
            return False
        self.recordings.finish_empty()
        if not self.recordings.pending() or self._waiting:
            return False
        if any(s.finalize is not None for s in list(self.streams.values())):
            return False
        spare = self.executor.free
        cost = self.stats.recording_cost
        n = 1 if cost <= 0 else max(1, int(self.settings.step_budget_s / cost))  # measure one first
        taken = self.recordings.take(min(n, spare))
        if not taken:
            return False
        try:
            keys = self.executor.admit([job for _, _, job in taken])
        except Exception as e:  # fail these recordings, never the loop or the live streams
            log.exception("recording admission failed")
            self.recordings.fail(taken, f"transcription failed: {e.__class__.__name__}")
            return True
        self.stats.recording_cost = _average(
            self.stats.recording_cost, self.executor.timing.encode_s / len(taken)
        )
        self._recording_batch = taken
        self._recording = {key: i for i, key in enumerate(keys)}
        audio = sum(job.audio.size for _, _, job in taken)
        self.metrics.audio_seconds.labels("recording").inc(audio / SAMPLE_RATE)
        self._observe("recording", "encode", len(taken), audio)
        return True

    def _complete_recordings(self) -> None:
        if self.recordings is None or not self._recording_batch or self._recording:
            return
        readings = [self._recording_readings[i] for i in range(len(self._recording_batch))]
        self.recordings.complete(self._recording_batch, readings)
        self._recording_batch, self._recording_readings = [], {}

    def _fail_recordings(self, e: Exception) -> None:
        if self.recordings is not None and self._recording_batch:
            self.recordings.fail(self._recording_batch, f"transcription failed: {e.__class__.__name__}")
        self._recording_batch, self._recording, self._recording_readings = [], {}, {}

    # ---------------- update: readings → events ----------------
    def _update(self, s: Stream, job: Job, reading: Reading, final: bool) -> None:
        """``final``: the reading was scheduled for the stream's pending finalization. An interim
        reading admitted before the utterance ended only updates the interim; the final gets a
        reading of its own (or this one, if it already heard the end: ``_reading_is_fresh``)."""
        if s.is_finished or s.id not in self._tracks:
            return
        track = self._tracks[s.id]
        s.hypothesis_until = job.start + job.audio.size / SAMPLE_RATE
        if reading.language and s.options.language in (None, "auto"):
            s.language = s.language or reading.language
        s.heard_words = None if reading.rejected else reading.words
        if final and s.finalize is not None:
            self._finalize(s, track)
        elif not reading.rejected:  # a rejected reading heard nothing: the interim stands
            new = self._past_confirmed(s.confirmed, reading.words)
            agreed = agreed_prefix(s.tail, new)
            s.confirmed += new[:agreed]
            s.tail = new[agreed:]
            self._send_interim(s)
            if s.finalize is None:
                self._finalize_long_sentences(s, track)

    @staticmethod
    def _past_confirmed(confirmed: list[Word], words: list[Word]) -> list[Word]:
        """The part of a new reading after the words already confirmed (by time, then by overlap)."""
        if not confirmed:
            return words
        cut = confirmed[-1].end - 0.1
        rest = [w for w in words if w.start >= cut]
        # the reading may repeat the last confirmed words with slightly earlier times
        for n in range(min(5, len(confirmed), len(rest)), 0, -1):
            if agreed_prefix(confirmed[-n:], rest[:n]) == n:
                return rest[n:]
        return rest

    def _send_interim(self, s: Stream) -> None:
        words = s.confirmed + s.tail
        text = join_words(words)
        if not s.options.interim_results or not text or text == s.last_interim:
            return
        s.last_interim = text
        if s.onset_arrived is not None:
            self.metrics.onset_to_interim.observe(time.monotonic() - s.onset_arrived)
            s.onset_arrived = None
        self._send(s, Interim(s.segment_id, text, words[0].start, words[-1].end, join_words(s.confirmed)))

    def _finalize_long_sentences(self, s: Stream, track: _Track) -> None:
        """In long unbroken speech, send confirmed whole sentences as finals rather than wait."""
        if track.heard - s.audio_start < SENTENCE_FINAL_AFTER_S:
            return
        n = last_sentence_end(s.confirmed)
        if n:
            self._emit_final(s, s.confirmed[:n], "sentence")
            s.said = s.confirmed[max(0, n - 5) : n]
            s.confirmed = s.confirmed[n:]
            s.heard_words = s.confirmed + s.tail  # what the reading heard past the sentence
            s.drop_audio_before(s.heard_words[0].start if s.heard_words else s.said[-1].end)

    def _finalize(self, s: Stream, track: _Track) -> None:
        """Send the utterance's final from the latest reading (``policy.final_words``)."""
        reason = s.finalize
        if reason == FinalizeReason.WINDOW and s.confirmed:
            # the confirmed words, and whole sentences the window's reading heard past them;
            # keep the rest for the next segment: it may end in a word cut in half
            rest = self._past_confirmed(s.confirmed, s.heard_words) if s.heard_words else s.tail
            sentences = last_sentence_end(rest) if s.heard_words else 0
            words, rest = s.confirmed + rest[:sentences], rest[sentences:]
            cut = rest[0].start if rest else track.final_until
        else:
            heard = s.heard_words
            if heard is not None and s.said:  # a sentence was finalized already: not twice
                heard = self._past_confirmed(s.said, heard)
            words = final_words(s.confirmed, s.tail, heard, s.speech_end or track.heard)
            cut = track.final_until
        self._emit_final(s, words, reason.value if reason is not None else "close")
        s.confirmed, s.tail, s.heard_words, s.said = [], [], None, []
        s.drop_audio_before(min(cut, s.now))
        s.hypothesis_until = s.audio_start
        s.finalize = None
        if reason == FinalizeReason.ENDPOINT:
            s.in_utterance = False
            self._send(s, SpeechEnded(round(s.speech_end or track.heard, 3)))
        elif reason == FinalizeReason.CLOSE:
            s.in_utterance = False
        self._track_speech(s, track)

    def _emit_final(self, s: Stream, words: list[Word], reason: str) -> None:
        s.last_interim = ""
        if not words:
            return
        speaker = None
        if s.speakers is not None and self.speakers is not None:
            words = self.speakers.label_now(s.speakers, words)  # its windows were read off-thread
            speaker = dominant(words)
        text = join_words(words)
        final = Final(
            s.segment_id,
            text,
            words[0].start,
            words[-1].end,
            list(words),
            s.language or s.options.language,
            reason,
            speaker,
        )
        if self.sink is not None:
            try:
                self.sink.commit(s.id, final, self.wm.name)  # durable before it is sent (_send)
            except Exception as e:  # the store cannot take it: this stream ends, no other
                self._store_failed(s, e)
                return
        self._send(s, final)
        self.metrics.finals.labels(reason).inc()
        if reason != "sentence":  # the others end where speech (or the client's audio) ended
            ended = s.speech_end if s.speech_end is not None else words[-1].end
            self.metrics.end_to_final.labels(reason).observe(time.monotonic() - s.arrived_at(ended))
        s.prompt.extend(self.wm.tokenizer.encode(" " + final.text))
        s.segment_id += 1
        s.finals += 1

    def _store_failed(self, s: Stream, e: Exception) -> None:
        """A final the store would not take: the client hears so after the finals already
        stored (``_send`` keeps the order), and the stream ends; it is never sent unstored."""
        if isinstance(e, VoxError):
            log.error("final not stored: %s", e.message, extra={"stream_id": s.id, "tenant": s.tenant})
            error = StoreUnavailableError(e.message) if not isinstance(e, StoreUnavailableError) else e
        else:
            log.exception("final not stored", extra={"stream_id": s.id, "tenant": s.tenant})
            error = StoreUnavailableError(f"the transcript store failed: {e.__class__.__name__}")
        self._send(s, Error(error.code, error.message + "; this stream ends after its stored finals"))
        s.status = StreamStatus.FINISHED

    # ---------------- finish: model-free finals, closing streams ----------------
    def _finish(self) -> bool:
        changed = False
        for s in list(self.streams.values()):
            track = self._tracks[s.id]
            if s.is_finished:
                changed = True
            elif s.finalize is not None and self._reading_is_fresh(s):
                self._finalize(s, track)
                changed = True
            elif s.closing and s.finalize is None and s.inbox_empty() and not track.decisions:
                if s.in_utterance:
                    self._request_final(s, track, FinalizeReason.CLOSE, s.now)
                else:
                    if s.status == StreamStatus.CLOSING:
                        self._send(s, Closed(round(s.now, 3), s.finals))
                    s.status = StreamStatus.FINISHED
                changed = True
            if s.is_finished:
                gone = [key for key, (stream, _, _) in self._live.items() if stream is s]
                self.executor.cancel(gone)
                for key in gone:
                    del self._live[key]
                with self._lock:
                    self.streams.pop(s.id, None)
                    self._tracks.pop(s.id, None)
                self._close_in_store(s)
        return changed

    def _close_in_store(self, s: Stream) -> None:
        """Mark the stream closed in the store; its finals are already there, so a store that
        cannot take the mark only costs the ``closed`` time (logged)."""
        if self.sink is None:
            return
        try:
            self.sink.close_stream(s.id, round(s.now, 3))
        except Exception as e:
            log.warning("stream's end not stored: %s", e, extra={"stream_id": s.id, "tenant": s.tenant})

    def _observe(self, kind: str, phase: str, size: int, samples: int) -> None:
        """Metrics of one admission (``encode``) or decode step (``decode``)."""
        timing, m = self.executor.timing, self.metrics
        seconds = timing.encode_s if phase == "encode" else timing.decode_s
        if phase == "encode":
            m.batch_size.labels(kind).observe(size)
            self._admitted_s += seconds
        m.step_seconds.labels(phase).observe(seconds)
        m.model_seconds.labels(kind).inc(seconds)
        self._model_s += seconds
        if kind == "recording":
            self._recording_audio_s += samples / SAMPLE_RATE

    def _send(self, s: Stream, event: Event) -> None:
        """Events reach the client in order, and none before the finals ahead of it are stored."""
        if self.sink is None:
            s.emit(event)
        elif s.status < StreamStatus.ABORTING:  # nobody listens to an aborted stream
            self.sink.deliver(s.id, partial(s.post, event))

    def _record(self, started: float, finished: int) -> None:
        self.stats.steps += 1
        m = self.metrics
        if self._model_s:
            m.step_seconds.labels("total").observe(time.perf_counter() - started)
            m.observe_work(self._model_s, self._ingested_s + self._recording_audio_s)
        elif self._ingested_s:
            m.observe_work(0.0, self._ingested_s)
        self._model_s = self._recording_audio_s = 0.0
        if finished:
            lags = [s.lag for s in list(self.streams.values())]
            for lag in lags:
                m.stream_lag.observe(lag)
            self.stats.last_step_s = time.perf_counter() - started

"""The one loop that owns the model and serves every live stream at once.

``Scheduler.step()`` is *ingest → schedule → execute → update*: take new audio and VAD
decisions for every stream, pick the streams that need a reading (finalizations first, then
the most-lagging interim readings) and admit them into free decode slots with one encoder
pass, run one decode step for every reading in flight, and hand the readings that finished to
their streams' utterances (``utterance.Utterance``), whose events it delivers. Readings join and
leave the decode batch at any step (continuous batching): a final that becomes due never waits
for a batch to drain. Under load each stream's interim readings come less often, so finals stay
prompt. Recordings (background work) fill the slots live streams leave. The scheduler decides
what to read and batches it; what a reading means for a stream is the utterance's business.
Handlers never call the model; a slow client only ever slows itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import NamedTuple

import torch

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.config import Settings
from voxindex.engine.background import Background
from voxindex.engine.delivery import Delivery, TranscriptSink
from voxindex.engine.events import Error
from voxindex.engine.executor import Executor
from voxindex.engine.prompting import StreamPrompt
from voxindex.engine.reading import MAX_WINDOW_AUDIO_S, Job, Reading
from voxindex.engine.recordings import Recordings
from voxindex.engine.speakers.labeller import Speakers
from voxindex.engine.speakers.worker import SpeakerWorker
from voxindex.engine.stats import StepMeter, StepStats, moving_average
from voxindex.engine.stream import Stream, StreamStatus
from voxindex.engine.turns.acoustic import SmartTurn
from voxindex.engine.turns.worker import AcousticWorker, PauseWorker, hear_pauses
from voxindex.engine.types import StreamOptions
from voxindex.engine.utterance import Phase, Utterance, chunks_of
from voxindex.engine.vad import CHUNK, Vad, VadState
from voxindex.errors import CapacityError, QuotaError, SpeakersUnavailableError
from voxindex.metrics import Metrics
from voxindex.models.whisper import WhisperModel

log = logging.getLogger("voxindex.engine")

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


class LiveReading(NamedTuple):
    """A live stream's reading in flight; ``final``: it is the ending utterance's final reading;
    ``urgent``: a final's or a turn's pause's (its reading is the final if the turn ends there)."""

    stream: Stream
    job: Job
    final: bool
    urgent: bool


class Scheduler:
    def __init__(
        self,
        model: WhisperModel,
        settings: Settings,
        sink: TranscriptSink | None = None,
        recordings: Recordings | None = None,
        metrics: Metrics | None = None,
        speakers: Speakers | None = None,
    ) -> None:
        self.model = model
        self.speakers = SpeakerWorker(speakers) if speakers is not None else None  # diarize
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.max_batch = settings.max_batch if settings.batching else 1
        self.executor = Executor(model, slots=self.max_batch)
        self.vad = Vad(model.device)
        smart_turn = SmartTurn.load(model.device, settings.threads or torch.get_num_threads())
        self.turns: PauseWorker = AcousticWorker(smart_turn, self.wake)  # the end-of-turn model
        self.sink = sink
        self.delivery = Delivery(sink, model.name, self.metrics, self.speakers)
        self.recordings = recordings
        self.stats = StepStats()
        self.meter = StepMeter(self.metrics, self.stats, self.executor)
        self.streams: dict[str, Stream] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()  # the loop's last turn: liveness
        self._live: dict[int, LiveReading] = {}  # by the executor's key
        self.background = Background(
            recordings, self.executor, settings.step_budget_s, self.stats, self.meter.observe
        )
        self._waiting = 0  # live readings due that did not get a slot this step
        self.lone_threads = max(settings.threads, settings.lone_threads)  # a lone final's (_admit)
        self._host_turn = 0.0  # when the work over every stream last ran

    # ---------------- lifecycle ----------------
    def start(self) -> None:
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        self._running = True
        if self.speakers is not None:
            self.speakers.start()
        self.turns.start()
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
        self.turns.stop()

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
        stream_id = uuid.uuid4().hex
        if self.settings.replica_id:  # which replica served it, visible in every id
            stream_id = f"{self.settings.replica_id}-{stream_id}"
        if options.turns is not None:
            options = replace(options, turns=replace(options.turns, evidence=self.settings.turn_evidence))
        utterance = Utterance(options, StreamPrompt(self.model.tokenizer))
        with self._lock:
            _check_room(list(self.streams.values()), self.settings, self.lag, tenant)
            stream = Stream(options, loop, utterance, self.settings.max_queue_s, tenant=tenant, id=stream_id)
            self.streams[stream.id] = stream
        if self.sink is not None:
            try:
                self.sink.open_stream(stream.id, self.model.name, stream.tenant)
            except BaseException:  # not stored, not admitted: the slot and the quota are free again
                with self._lock:
                    del self.streams[stream.id]
                raise
        return stream

    def check_room(self, tenant: str = "default") -> None:
        """Raise what ``open`` would for want of room (for a protocol that opens its stream
        only once the client configured it: it refuses a full server at the handshake)."""
        with self._lock:
            _check_room(list(self.streams.values()), self.settings, self.lag, tenant)

    @property
    def lag(self) -> float:
        """How far the engine is behind real time: the worst stream's ``behind`` (s); a client
        sending faster than real time is not the engine falling behind (``Stream.behind``)."""
        return max((s.behind for s in list(self.streams.values())), default=0.0)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def warm_up(self, audio: Float32Array, batch: int = 2) -> Reading:
        """Run the model once, before the loop starts, on real speech at a real batch size:
        first calls allocate, pick kernels and fill caches, so the first client does not wait
        for that. Returns the reading, which the caller may check."""
        self.vad([VadState()], [audio])
        self.turns.warm_up(audio)
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
            background = self.background.admit(lambda: self._waiting > 0 or _any_ending(streams))
        readings = self._execute()
        for live, reading in readings:
            self._update(live, reading)
        finished = self._finish() if host or readings else False
        self.meter.record(started, len(readings), lambda: [s.lag for s in list(self.streams.values())])
        return ingested or admitted or background or bool(readings) or finished or len(self.executor) > 0

    def _host_turn_due(self, now: float) -> bool:
        """Whether this step does the work over every stream: always when nothing is decoding,
        else every ``HOST_INTERVAL_S``."""
        if len(self.executor) and now - self._host_turn < HOST_INTERVAL_S:
            return False
        self._host_turn = now
        return True

    # ---------------- ingest: audio and VAD into each utterance ----------------
    def _ingest(self, streams: list[Stream]) -> bool:
        # audio the stream's VAD decisions have not been interpreted for yet stays in the inbox,
        # so a stream ahead of its readings holds at most MAX_INGEST_S here and backpressure
        # reaches its client
        waiting = [s for s in streams if s.has_inbox]
        fresh = [s.take_inbox(self._ingest_room(s)) for s in waiting]
        heard = [(s, audio) for s, audio in zip(waiting, fresh, strict=True) if audio.size]
        self.meter.ingested(sum(a.size for _, a in heard) / SAMPLE_RATE)
        gated = [(s, audio) for s, audio in heard if s.options.vad]
        probs = self.vad([s.utterance.vad for s, _ in gated], [audio for _, audio in gated])
        by_id = {s.id: p for (s, _), p in zip(gated, probs, strict=True)}
        for s, audio in heard:
            p = s.utterance.hear(audio, by_id.get(s.id))
            if s.speakers is not None and self.speakers is not None and len(p):
                self.speakers.hear_chunks(s.speakers, chunks_of(s.utterance, p))
        # a stream with no new audio has nothing to interpret, unless decisions wait (behind a
        # final) or a flush was asked for: at a thousand streams, skipping it is most of a turn
        for s in streams:
            if s.utterance.has_news or s.flush_requested:
                self._interpret(s)
        for s in hear_pauses(self.turns, streams):
            self._deliver(s)
        return bool(heard)

    def _interpret(self, s: Stream) -> None:
        s.utterance.interpret(flush=s.take_flush(), turns=s.take_turn_options())
        self._deliver(s)

    def _ingest_room(self, s: Stream) -> int:
        """Audio the engine takes from a stream's inbox this step: at most MAX_INGEST_S ahead of
        its interpreted VAD decisions, and never more than a model window held (a final in
        flight for several steps must not let the buffer grow past what it can read)."""
        pending = s.utterance.pending_decisions * CHUNK
        held = int(MAX_WINDOW_AUDIO_S * SAMPLE_RATE) - s.utterance.audio.size
        return max(0, min(int(MAX_INGEST_S * SAMPLE_RATE) - pending, held))

    # ---------------- schedule ----------------
    def _schedule(self, streams: list[Stream]) -> list[LiveReading]:
        """Finalizations that need a fresh reading first, then interim readings by lag, as many
        as there are free slots and encoder time in one step's budget. A stream has at most one
        reading in flight."""
        self._drop_stale_interims()
        busy = {id(live.stream) for live in self._live.values()}
        idle = [s for s in streams if id(s) not in busy]
        # finals, and turns' pauses (their reading is the final if the turn ends there): from the
        # first silent chunk on an idle engine, else from PAUSE_S (shorter ones: gaps in words)
        quiet = not self._live and not self._waiting
        urgent = [
            s for s in idle if s.utterance.needs_final_reading or s.utterance.needs_pause_reading(quiet)
        ]
        interval = self._interim_interval(streams)
        ready = [s for s in idle if s.utterance.wants_interim(interval)]
        ready.sort(key=lambda s: (s.behind, s.lag), reverse=True)  # real-time clients before floods
        free = self.executor.free
        urgent = urgent[:free]
        # every admission's encoder pass stalls the readings in flight: while a final (or a
        # pause's reading) is being decoded, interim readings join it only where encoding them
        # costs little (a GPU)
        urgent_in_flight = any(live.urgent for live in self._live.values())
        budget = self.stats.admissions_in_budget(self.settings.step_budget_s, self.max_batch)
        room = self.stats.stall_allowance(FINAL_STALL_S) if urgent_in_flight else budget
        spare = max(0, min(free, room) - len(urgent))
        interims = ready[:spare]
        self._waiting = len(ready) - len(interims)
        finals = [LiveReading(s, self._job(s), s.utterance.phase == Phase.ENDING, True) for s in urgent]
        return finals + [LiveReading(s, self._job(s), False, False) for s in interims]

    def _drop_stale_interims(self) -> None:
        """A stream whose final became due while an interim of it is in flight gets its final
        reading now: the interim is dropped, unless it hears the whole utterance (it serves as the
        final: ``Utterance.final_is_fresh``)."""
        reading = {id(live.stream) for live in self._live.values()}
        for key, live in list(self._live.items()):
            alone = reading == {id(live.stream)} and not self._waiting  # a turn's pause is read early
            if not live.final and live.stream.utterance.interim_is_stale(live.job.end, alone):
                self.executor.cancel([key])
                del self._live[key]

    def _interim_interval(self, streams: list[Stream]) -> float:
        """Seconds of new audio between a stream's interim readings. Under load the interval
        stretches so interim readings take at most ``INTERIM_SHARE`` of the engine's time and
        finals never queue behind them; when the engine keeps up it is ``step_audio_s``."""
        speaking = sum(s.utterance.phase != Phase.QUIET for s in streams)
        load = speaking * self.stats.reading_cost / INTERIM_SHARE
        return max(self.settings.step_audio_s, load)

    def _job(self, s: Stream) -> Job:
        """The stream's next reading: its utterance's window, primed with its key terms, context
        and own past text (engine/prompting.py)."""
        u, prompting = s.utterance, s.prompting
        start, until = u.window()
        audio, language = u.audio.between(start, until), u.language or s.options.language
        return Job(audio, start, u.prompt(prompting), language, s.options.task, prompting, u.draft(start))

    # ---------------- execute: admission and one decode step ----------------
    def _admit(self, batch: list[LiveReading]) -> bool:
        """One encoder pass for ``batch``; a final (a pause's reading) with nothing else in flight
        encodes on ``lone_threads``: cores the engine leaves idle (``Settings.lone_threads``)."""
        if not batch:
            return False
        lone = len(batch) == 1 and batch[0].urgent and not len(self.executor)
        try:
            keys = self.executor.admit([live.job for live in batch], self.lone_threads if lone else 0)
        except Exception as e:  # fail these streams, never the loop or other streams
            log.exception("model admission failed")
            _fail([live.stream for live in batch], e)
            return True
        self._live.update(zip(keys, batch, strict=True))
        self.stats.encode_cost = moving_average(
            self.stats.encode_cost, self.executor.timing.encode_s / len(batch)
        )
        self.stats.batch_items += len(batch)
        self.meter.observe("live", "encode", len(batch), sum(live.job.audio.size for live in batch))
        return True

    def _execute(self) -> list[tuple[LiveReading, Reading]]:
        """One decode step for every reading in flight; live readings that finished."""
        if not len(self.executor):
            return []
        rows = len(self.executor)
        try:
            finished = self.executor.step()
        except Exception as e:  # every reading in flight is lost: fail their streams, not the loop
            log.exception("decode step failed")
            self.executor.cancel()
            _fail([live.stream for live in self._live.values()], e)
            self._live.clear()
            self.background.fail(e)
            return []
        self.stats.batches += 1
        self.stats.decode_rows += rows
        self.stats.recent_batches.append(rows)
        self.meter.observe("live", "decode", rows, 0)
        self.meter.readings_finished(len(finished))
        out = []
        for key, reading in finished:
            if key in self._live:
                out.append((self._live.pop(key), reading))
            else:
                self.background.finished(key, reading)
        self.background.complete()
        return out

    # ---------------- update: readings into utterances, their events out ----------------
    def _update(self, live: LiveReading, reading: Reading) -> None:
        s = live.stream
        if s.is_finished or s.id not in self.streams:
            return
        if s.utterance.read(reading, live.job.end, live.final):
            self._interpret(s)  # decisions held back while the final was due; delivers
        else:
            self._deliver(s)

    def _deliver(self, s: Stream) -> None:
        self.delivery.deliver(s, s.utterance.take_events())

    # ---------------- finish: model-free finals, closing streams ----------------
    def _finish(self) -> bool:
        changed = False
        for s in list(self.streams.values()):
            u = s.utterance
            if s.is_finished:
                changed = True
            elif u.final_is_fresh:
                u.finalize()
                self._interpret(s)
                changed = True
            elif s.closing and u.phase != Phase.ENDING and s.inbox_empty() and not u.pending_decisions:
                if u.close():
                    if s.status == StreamStatus.CLOSING:
                        self.delivery.closed(s)
                    s.finish()
                changed = True
            if s.is_finished:
                gone = [key for key, live in self._live.items() if live.stream is s]
                self.executor.cancel(gone)
                for key in gone:
                    del self._live[key]
                with self._lock:
                    self.streams.pop(s.id, None)
                self.delivery.close_in_store(s)
        return changed


def _any_ending(streams: list[Stream]) -> bool:
    """Whether a final is pending on any of ``streams``."""
    return any(s.utterance.phase == Phase.ENDING for s in streams)


def _fail(streams: list[Stream], e: Exception) -> None:
    """The model failed these streams' readings: they end with an error, no other stream does."""
    for stream in streams:
        stream.emit(Error("engine_error", f"transcription failed: {e.__class__.__name__}"))
        stream.finish()


def _check_room(streams: list[Stream], settings: Settings, lag: float, tenant: str) -> None:
    if len(streams) >= settings.max_streams:
        raise CapacityError(f"server is at its limit of {settings.max_streams} streams")
    quota = settings.max_streams_per_tenant
    if quota and sum(s.tenant == tenant for s in streams) >= quota:
        raise QuotaError(f"tenant {tenant!r} already has its limit of {quota} concurrent streams")
    if lag > ADMISSION_MAX_LAG_S:
        raise CapacityError(f"engine is {lag:.1f} s behind real time; try again shortly")

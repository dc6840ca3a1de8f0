"""The scheduler in-process: batching, bounded memory on long speech, and surviving a failing batch."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.conftest import PROSE, Synth, corpus_wer
from voxindex.config import Settings
from voxindex.engine.events import Closed, Error, Event, Final
from voxindex.engine.scheduler import LiveReading, Scheduler
from voxindex.engine.stream import Stream
from voxindex.engine.types import StreamOptions, TurnOptions
from voxindex.engine.vad import CHUNK
from voxindex.models.whisper import WhisperModel


async def collect(stream: Stream) -> list[Event]:
    events: list[Event] = []
    while True:
        event = await asyncio.wait_for(stream.events.get(), timeout=300)
        events.append(event)
        if isinstance(event, Closed) or (isinstance(event, Error) and event.code == "engine_error"):
            return events


@pytest.fixture
def make_scheduler(tiny: WhisperModel):  # type: ignore[no-untyped-def]
    started: list[Scheduler] = []

    def make(**overrides: object) -> Scheduler:
        scheduler = Scheduler(tiny, Settings(**overrides))  # type: ignore[arg-type]
        scheduler.start()
        started.append(scheduler)
        return scheduler

    yield make
    for scheduler in started:
        scheduler.stop()


async def test_long_unbroken_speech_keeps_memory_bounded_and_finalizes(
    make_scheduler,
    synth: Synth,  # type: ignore[no-untyped-def]
) -> None:
    scheduler = make_scheduler()
    speech = np.concatenate([synth(s) for s in PROSE])  # ~55 s with no pause long enough to endpoint
    stream = scheduler.open(StreamOptions(vad=False), asyncio.get_running_loop())
    largest = 0
    collector = asyncio.create_task(collect(stream))
    for i in range(0, speech.size, 16000):
        await stream.room.wait()
        stream.push_audio(speech[i : i + 16000])
        scheduler.wake()
        largest = max(largest, stream.utterance.audio.size)
        await asyncio.sleep(0.05)
    stream.request_close()
    scheduler.wake()
    events = await collector
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) >= 3  # sentences finalized during the monologue, not all at the end
    assert largest <= 31 * 16000  # the window never holds more than 30 s
    assert corpus_wer([(" ".join(PROSE), " ".join(f.text for f in finals))]) <= 0.15


async def test_streams_share_batches_unless_batching_is_off(make_scheduler, synth: Synth) -> None:  # type: ignore[no-untyped-def]
    speech = np.concatenate([np.zeros(4000, np.float32), synth(PROSE[6]), np.zeros(16000, np.float32)])
    for batching, expect_shared in ((True, True), (False, False)):
        scheduler = make_scheduler(batching=batching)
        loop = asyncio.get_running_loop()
        streams = [scheduler.open(StreamOptions(), loop) for _ in range(3)]
        collectors = [asyncio.create_task(collect(s)) for s in streams]
        for s in streams:  # all audio at once: every stream is ready at every step
            s.push_audio(speech)
            s.request_close()
        scheduler.wake()
        results = await asyncio.gather(*collectors)
        for events in results:
            text = " ".join(e.text for e in events if isinstance(e, Final))
            assert corpus_wer([(PROSE[6], text)]) <= 0.10
        assert (max(scheduler.stats.recent_batches) > 1) == expect_shared


async def test_a_failing_batch_fails_its_streams_not_the_loop(make_scheduler, synth: Synth) -> None:  # type: ignore[no-untyped-def]
    scheduler = make_scheduler()
    real_admit = scheduler.executor.admit
    calls = {"n": 0}

    def flaky(jobs, threads=0):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_admit(jobs, threads)

    scheduler.executor.admit = flaky  # type: ignore[method-assign]
    speech = np.concatenate([np.zeros(4000, np.float32), synth(PROSE[8]), np.zeros(16000, np.float32)])
    loop = asyncio.get_running_loop()
    doomed = scheduler.open(StreamOptions(), loop)
    doomed.push_audio(speech)
    doomed.request_close()
    scheduler.wake()
    events = await collect(doomed)
    assert isinstance(events[-1], Error) and events[-1].code == "engine_error"
    survivor = scheduler.open(StreamOptions(), loop)
    survivor.push_audio(speech)
    survivor.request_close()
    scheduler.wake()
    text = " ".join(e.text for e in await collect(survivor) if isinstance(e, Final))
    assert corpus_wer([(PROSE[8], text)]) <= 0.10


async def test_a_long_silent_stream_costs_no_model_calls_and_no_memory(make_scheduler) -> None:  # type: ignore[no-untyped-def]
    scheduler = make_scheduler()
    stream = scheduler.open(StreamOptions(), asyncio.get_running_loop())
    collector = asyncio.create_task(collect(stream))
    rng = np.random.default_rng(3)
    largest = 0
    for _ in range(120):  # two minutes of room noise, fed ten times faster than real time
        await stream.room.wait()
        stream.push_audio((0.003 * rng.standard_normal(16000)).astype(np.float32))
        scheduler.wake()
        await asyncio.sleep(0.01)
        largest = max(largest, stream.utterance.audio.size)
    stream.request_close()
    scheduler.wake()
    events = await collector
    assert [type(e) for e in events] == [Closed]
    assert scheduler.stats.batches == 0  # the VAD kept the model idle
    assert largest <= 16000 * 11  # at most one ingest (10 s) beyond the 0.4 s pre-roll


def test_while_a_pause_is_read_no_interim_stalls_it_on_a_cpu(tiny: WhisperModel) -> None:
    """A turn's pause reading is the turn's final if the turn ends there: while one decodes, an
    interim reading's encoder pass (~0.13 s on a CPU, every decode step waits for it) is not let
    in; beside an interim in flight it is. A new pause (or final) always is."""
    scheduler = Scheduler(tiny, Settings())  # not started: its schedule is asked directly
    scheduler.stats.encode_cost = 0.13
    loop = asyncio.new_event_loop()
    try:
        talking, pausing = (scheduler.open(StreamOptions(turns=TurnOptions()), loop) for _ in range(2))
        for s in (talking, pausing):
            s.utterance.hear(np.zeros(60 * CHUNK, np.float32), np.r_[np.zeros(10), np.full(50, 0.9)])
            s.utterance.interpret()
        assert talking.utterance.wants_interim(0.5)
        job = scheduler._job(pausing)
        for urgent, admitted in ((True, []), (False, [talking])):
            scheduler._live = {0: LiveReading(pausing, job, final=False, urgent=urgent)}
            assert [live.stream for live in scheduler._schedule([talking, pausing])] == admitted
        scheduler._live = {0: LiveReading(pausing, job, final=False, urgent=True)}
        talking.utterance.hear(np.zeros(4 * CHUNK, np.float32), np.zeros(4))  # its own pause (128 ms)
        talking.utterance.interpret()
        [live] = scheduler._schedule([talking, pausing])
        assert live.stream is talking and live.urgent
    finally:
        loop.close()


async def test_a_reading_of_a_window_read_before_starts_from_that_reading(
    make_scheduler,  # type: ignore[no-untyped-def]
    synth: Synth,
) -> None:
    """Each reading re-reads the utterance from its start: the next one is given the last one's
    tokens as a draft and the runner keeps what greedy decoding agrees with (test_runner), so
    the transcript is what it would be without, in fewer decode steps."""
    scheduler = make_scheduler()
    drafts: list[int] = []
    real_admit = scheduler.executor.admit

    def spy(jobs, threads=0):  # type: ignore[no-untyped-def]
        drafts.extend(len(job.draft) for job in jobs)
        return real_admit(jobs, threads)

    scheduler.executor.admit = spy  # type: ignore[method-assign]
    speech = np.concatenate([np.zeros(8000, np.float32), synth(PROSE[6]), np.zeros(16000, np.float32)])
    stream = scheduler.open(StreamOptions(), asyncio.get_running_loop())
    collector = asyncio.create_task(collect(stream))
    for i in range(0, speech.size, 3200):
        stream.push_audio(speech[i : i + 3200])
        scheduler.wake()
        await asyncio.sleep(0.2)
    stream.request_close()
    scheduler.wake()
    text = " ".join(e.text for e in await collector if isinstance(e, Final))
    assert corpus_wer([(PROSE[6], text)]) <= 0.10
    assert drafts[0] == 0 and sum(d > 0 for d in drafts) >= 2, drafts


async def test_an_empty_audio_frame_does_not_keep_a_stream_from_closing(make_scheduler, synth: Synth) -> None:  # type: ignore[no-untyped-def]
    """A client's empty binary frame (or a codec packet that decodes to no samples) queues
    nothing: the stream still closes with its final."""
    scheduler = make_scheduler()
    stream = scheduler.open(StreamOptions(), asyncio.get_running_loop())
    stream.push_audio(np.concatenate([np.zeros(4000, np.float32), synth(PROSE[6])]))
    scheduler.wake()
    while not stream.inbox_empty():  # the engine took the speech: the empty frame comes alone
        await asyncio.sleep(0.01)
    stream.push_audio(np.zeros(0, np.float32))
    stream.request_close()
    scheduler.wake()
    events = await asyncio.wait_for(collect(stream), timeout=60)
    assert isinstance(events[-1], Closed)
    assert corpus_wer([(PROSE[6], " ".join(e.text for e in events if isinstance(e, Final)))]) <= 0.10


async def test_a_lone_final_is_encoded_on_the_cores_the_engine_leaves_idle(
    make_scheduler,  # type: ignore[no-untyped-def]
    synth: Synth,
) -> None:
    """With ``lone_threads`` set, a final (a flush's, with nothing else in flight) is admitted on
    that many threads: its encoder pass is most of the time from end of speech to the final.
    Interim readings stay on the engine's thread."""
    scheduler = make_scheduler(lone_threads=2)
    admitted: list[tuple[bool, int, int]] = []  # (urgent, readings in flight before, threads)
    real_admit, real_executor_admit = scheduler._admit, scheduler.executor.admit
    batches: list[list[LiveReading]] = []

    def admit(batch):  # type: ignore[no-untyped-def]
        batches.append(batch)
        return real_admit(batch)

    def executor_admit(jobs, threads=0):  # type: ignore[no-untyped-def]
        urgent = all(live.urgent for live in batches[-1])
        admitted.append((urgent and len(jobs) == 1, len(scheduler.executor), threads))
        return real_executor_admit(jobs, threads)

    scheduler._admit = admit  # type: ignore[method-assign]
    scheduler.executor.admit = executor_admit  # type: ignore[method-assign]
    stream = scheduler.open(StreamOptions(), asyncio.get_running_loop())
    collector = asyncio.create_task(collect(stream))
    speech = synth(PROSE[0])
    for i in range(0, speech.size, 1600):  # 100 ms at a time, at real time
        stream.push_audio(speech[i : i + 1600])
        scheduler.wake()
        await asyncio.sleep(0.1)
    stream.request_flush()
    stream.request_close()
    scheduler.wake()
    events = await collector
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.reason for f in finals] == ["flush"] and corpus_wer([(PROSE[0], finals[0].text)]) < 0.2
    lone = [threads for urgent, in_flight, threads in admitted if urgent and not in_flight]
    assert lone and set(lone) == {scheduler.lone_threads}  # the flush's final (and the close's)
    assert any(not urgent for urgent, _, _ in admitted)  # interim readings were admitted …
    assert all(threads == 0 for urgent, _, threads in admitted if not urgent)  # … on the engine's thread

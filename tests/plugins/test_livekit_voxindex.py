"""``livekit.plugins.voxindex`` against a real voxindex server on loopback: 48 kHz frames of real
speech in, LiveKit speech events out, with no LiveKit server involved."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents import stt as lk_stt
from livekit.plugins import voxindex

from tests.conftest import PROSE, KeyedServer, Synth, corpus_wer, frames_48k, load_fixture

Kind = lk_stt.SpeechEventType
GAP = np.zeros(16000, dtype=np.float32)
HUMAN_REFERENCE = "go forward ten meters. eight of spades four of clubs seven of hearts."


def human_speech() -> np.ndarray:
    return np.concatenate([GAP, load_fixture("goforward.wav"), GAP, load_fixture("cards-005.wav"), GAP])


@dataclass
class Run:
    events: list[lk_stt.SpeechEvent] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def kinds(self) -> list[Kind]:
        return [e.type for e in self.events if e.type != Kind.RECOGNITION_USAGE]

    def finals(self) -> list[lk_stt.SpeechEvent]:
        return [e for e in self.events if e.type == Kind.FINAL_TRANSCRIPT]

    def text(self) -> str:
        return " ".join(e.alternatives[0].text for e in self.finals())


@pytest.fixture
async def plugin(keyed_server: KeyedServer) -> AsyncIterator[voxindex.STT]:
    stt = voxindex.STT(base_url=keyed_server.url, api_key=keyed_server.api_key)
    yield stt
    await stt.aclose()


async def push(stream: voxindex.SpeechStream, audio: np.ndarray, *, real_time: bool = True) -> None:
    for frame in frames_48k(audio):
        stream.push_frame(frame)
        if real_time:
            await asyncio.sleep(frame.duration)


async def collect(stt: voxindex.STT, stream: voxindex.SpeechStream, run: Run) -> None:
    stt.on("error", run.errors.append)
    async for event in stream:
        run.events.append(event)


def assert_paired(kinds: list[Kind]) -> None:
    """START → INTERIM* → FINAL+ → END for every utterance; never two starts in a row."""
    speaking = False
    for kind in kinds:
        if kind == Kind.START_OF_SPEECH:
            assert not speaking, kinds
            speaking = True
        elif kind in (Kind.INTERIM_TRANSCRIPT, Kind.FINAL_TRANSCRIPT):
            assert speaking, kinds
        elif kind == Kind.END_OF_SPEECH:
            assert speaking, kinds
            speaking = False
    assert not speaking, kinds


async def test_real_speech_streams_to_paired_events_with_timings(plugin: voxindex.STT) -> None:
    run = Run()
    stream = plugin.stream()
    collector = asyncio.create_task(collect(plugin, stream, run))
    audio = human_speech()
    await push(stream, audio)
    stream.end_input()
    await asyncio.wait_for(collector, 60)
    assert corpus_wer([(HUMAN_REFERENCE, run.text())]) <= 0.15
    kinds = run.kinds()
    assert_paired(kinds)
    assert kinds.count(Kind.START_OF_SPEECH) == 2 and Kind.INTERIM_TRANSCRIPT in kinds
    usage = sum(e.recognition_usage.audio_duration for e in run.events if e.recognition_usage)
    assert usage == pytest.approx(audio.size / 16000, abs=0.1)
    for final in run.finals():
        data = final.alternatives[0]
        words = data.words or []
        assert words and all(a.start_time <= b.start_time for a, b in itertools.pairwise(words))
        assert data.start_time <= words[0].start_time and words[-1].end_time <= data.end_time + 0.01
        assert final.speech_end_time is not None
        assert run.started < final.speech_end_time <= final.created_at  # when speech ended, by the clock
    ends = [e for e in run.events if e.type == Kind.END_OF_SPEECH]
    assert all(e.speech_end_time is not None and e.speech_end_time <= e.created_at for e in ends)
    assert not run.errors


async def test_flush_makes_a_final_without_silence(plugin: voxindex.STT, synth: Synth) -> None:
    run = Run()
    stream = plugin.stream()
    collector = asyncio.create_task(collect(plugin, stream, run))
    await push(stream, synth(PROSE[5]), real_time=False)  # no trailing silence: no endpoint can fire
    stream.flush()
    for _ in range(300):
        if run.finals():
            break
        await asyncio.sleep(0.1)
    assert corpus_wer([(PROSE[5], run.text())]) <= 0.15  # the final came before the input ended
    stream.end_input()
    await asyncio.wait_for(collector, 60)
    assert_paired(run.kinds())
    assert not run.errors


async def test_update_options_reaches_a_live_stream(plugin: voxindex.STT, synth: Synth) -> None:
    run = Run()
    stream = plugin.stream()
    collector = asyncio.create_task(collect(plugin, stream, run))
    await push(stream, np.concatenate([GAP, synth(PROSE[6]), GAP]))
    while Kind.END_OF_SPEECH not in run.kinds():
        await asyncio.sleep(0.1)
    assert Kind.INTERIM_TRANSCRIPT in run.kinds()
    plugin.update_options(interim_results=False)
    seen = len(run.events)
    await push(stream, np.concatenate([GAP, synth(PROSE[7]), GAP]))
    stream.end_input()
    await asyncio.wait_for(collector, 60)
    later = [e.type for e in run.events[seen:]]
    assert Kind.FINAL_TRANSCRIPT in later and Kind.INTERIM_TRANSCRIPT not in later
    assert corpus_wer([(f"{PROSE[6]} {PROSE[7]}", run.text())]) <= 0.15


async def test_a_bad_key_fails_fast_without_retries(keyed_server: KeyedServer) -> None:
    stt = voxindex.STT(base_url=keyed_server.url, api_key="vxk_nobody_nothing")
    run = Run()
    stream = stt.stream(conn_options=APIConnectOptions(max_retry=3, retry_interval=2.0))
    started = time.monotonic()
    with pytest.raises(APIStatusError) as refused:
        await asyncio.wait_for(collect(stt, stream, run), 10)
    assert refused.value.status_code == 401 and not refused.value.retryable
    assert time.monotonic() - started < 2.0  # no retry interval was waited
    assert [e.recoverable for e in run.errors] == [False]
    await stt.aclose()


async def test_recognize_a_whole_buffer(plugin: voxindex.STT) -> None:
    event = await plugin.recognize(frames_48k(load_fixture("goforward.wav")))
    assert event.type == Kind.FINAL_TRANSCRIPT
    assert corpus_wer([("go forward ten meters", event.alternatives[0].text)]) <= 0.1
    assert event.alternatives[0].words


async def test_a_server_restart_mid_stream_is_survived(restartable: Any, synth: Synth) -> None:
    start, stop = restartable
    url = start()
    stt = voxindex.STT(base_url=url)
    run = Run()
    stream = stt.stream(conn_options=APIConnectOptions(max_retry=10, retry_interval=0.5))
    collector = asyncio.create_task(collect(stt, stream, run))
    first = np.concatenate([GAP, synth(PROSE[8]), GAP])
    await push(stream, first)
    while not run.finals():
        await asyncio.sleep(0.1)
    await asyncio.to_thread(stop)  # the server goes away mid-stream (it finishes what it heard)
    await asyncio.to_thread(start)
    await push(stream, np.concatenate([GAP, synth(PROSE[9]), GAP]))
    stream.end_input()
    await asyncio.wait_for(collector, 90)
    await stt.aclose()
    assert corpus_wer([(f"{PROSE[8]} {PROSE[9]}", run.text())]) <= 0.15
    assert any(e.recoverable for e in run.errors)  # it did lose the connection, and came back
    last = run.finals()[-1].alternatives[0]  # said after the restart: its times go on
    assert PROSE[9].split()[1].lower() in run.text().lower() and last.start_time >= first.size / 16000
    assert_paired(run.kinds())


async def test_diarization_sets_speaker_id_on_every_final(keyed_server: KeyedServer) -> None:
    """``diarization=True``: the capability is declared and each final's ``SpeechData`` names its
    speaker ("S0", "S1"), the same id for the same person throughout; the most heard is primary."""
    from tests.conversations import attribution, conversation, speaker_of, voices

    audio, turns = conversation(voices(), ["librivox", "cards"], turns=6, seed=3)
    stt = voxindex.STT(base_url=keyed_server.url, api_key=keyed_server.api_key, diarization=True)
    assert stt.capabilities.diarization and not voxindex.STT(base_url="http://x").capabilities.diarization
    run = Run()
    stream = stt.stream()
    collector = asyncio.create_task(collect(stt, stream, run))
    for frame in frames_48k(audio):
        stream.push_frame(frame)
        await asyncio.sleep(frame.duration / 2)  # twice real time
    stream.end_input()
    await asyncio.wait_for(collector, 90)
    await stt.aclose()
    data = [f.alternatives[0] for f in run.finals()]
    assert data and {d.speaker_id for d in data} == {"S0", "S1"}
    pairs = []
    for d in data:
        truth = speaker_of(turns, d.start_time, d.end_time)
        if truth is not None and d.speaker_id is not None:
            pairs.append((truth, int(d.speaker_id[1:])))
    assert attribution(pairs) >= 0.8
    spoken: dict[str | None, float] = {}
    for d in data:
        spoken[d.speaker_id] = spoken.get(d.speaker_id, 0.0) + d.end_time - d.start_time
    assert data[-1].is_primary_speaker == (data[-1].speaker_id == max(spoken, key=lambda k: spoken[k]))
    assert not run.errors


async def test_keyterm_updates_and_conversation_items_reach_a_live_stream(
    keyed_server: KeyedServer, synth: Synth
) -> None:
    """``keyterms=True`` and ``chat_context=True``: the framework's session key terms
    (``_update_session_keyterms``) and conversation items (``_push_conversation_item``) reach
    the live stream without a reconnect and get names right that tiny.en misses unprimed."""
    from livekit.agents.llm import ChatMessage
    from livekit.agents.voice.events import ConversationItemAddedEvent

    from tests.api.test_keyterms import SIOBHAN, XIOMARA, says

    stt = voxindex.STT(base_url=keyed_server.url, api_key=keyed_server.api_key, interim_results=False)
    assert stt.capabilities.keyterms and stt.capabilities.chat_context
    run = Run()
    stream = stt.stream()
    collector = asyncio.create_task(collect(stt, stream, run))

    async def say(text: str) -> str:
        ended = run.kinds().count(Kind.END_OF_SPEECH)
        for frame in frames_48k(np.concatenate([GAP, synth(text), GAP])):
            stream.push_frame(frame)
            await asyncio.sleep(frame.duration / 2)
        async with asyncio.timeout(30):
            while run.kinds().count(Kind.END_OF_SPEECH) == ended:
                await asyncio.sleep(0.05)
        return run.finals()[-1].alternatives[0].text

    assert not says(await say(XIOMARA), "Xiomara")
    reply = ChatMessage(role="assistant", content=["Sure. Is it Xiomara's tunnel you mean?"])
    stt._push_conversation_item(ConversationItemAddedEvent(item=reply))
    assert says(await say(XIOMARA), "Xiomara")
    assert not says(await say(SIOBHAN), "Siobhan Nguyen")
    stt._update_session_keyterms(["Siobhan Nguyen"])
    assert says(await say(SIOBHAN), "Siobhan Nguyen")
    stream.end_input()
    await asyncio.wait_for(collector, 60)
    await stt.aclose()
    assert len({e.request_id for e in run.finals()}) == 1  # one server stream: no reconnect
    assert not run.errors


# ---------------- the server's turns drive the agent's (turn_detection="stt") ----------------
async def test_turn_detection_gives_one_final_and_end_of_speech_per_turn(keyed_server: KeyedServer) -> None:
    from tests.turn_corpus import HUMAN, build, session

    amiable, forward = (build(next(s for s in HUMAN if s.name == n)) for n in ("amiable", "forward"))
    audio, _ = session([amiable, forward], gap_s=2.0)  # "He might even have | 1.2 s | been …"
    stt = voxindex.STT(
        base_url=keyed_server.url, api_key=keyed_server.api_key, turn_detection=True, eager_eot_threshold=0.4
    )
    run = Run()
    stream = stt.stream()
    collector = asyncio.create_task(collect(stt, stream, run))
    await push(stream, audio)
    stream.end_input()
    await asyncio.wait_for(collector, 60)
    await stt.aclose()
    kinds = [k for k in run.kinds() if k != Kind.PREFLIGHT_TRANSCRIPT]
    assert_paired(kinds)
    assert kinds.count(Kind.START_OF_SPEECH) == kinds.count(Kind.FINAL_TRANSCRIPT) == 2, kinds
    assert Kind.INTERIM_TRANSCRIPT in kinds
    finals = [e.alternatives[0].text for e in run.finals()]
    assert corpus_wer([(amiable.text, finals[0]), (forward.text, finals[1])]) <= 0.2
    # FINAL then END_OF_SPEECH, each turn; an eager end (if any) said what the final says
    for final in run.finals():
        after = run.events[run.events.index(final) + 1 :]
        assert next(e.type for e in after if e.type != Kind.RECOGNITION_USAGE) == Kind.END_OF_SPEECH
        assert final.speech_end_time is not None and run.started < final.speech_end_time <= final.created_at
        before = run.events[: run.events.index(final)]
        preflights = [e for e in before if e.type == Kind.PREFLIGHT_TRANSCRIPT]
        if preflights and preflights[-1] is before[-1]:
            assert preflights[-1].alternatives[0].text == final.alternatives[0].text
    assert not run.errors
    # livekit-agents' own recognition path, as AgentSession(turn_detection="stt") runs it
    ended, preemptive = await recognize(run.events)
    assert ended == finals  # one end of turn per turn, none at the pause mid-sentence
    assert preemptive and set(preemptive) <= {
        *finals,
        *(e.alternatives[0].text for e in run.events if e.alternatives),
    }


async def recognize(events: list[lk_stt.SpeechEvent]) -> tuple[list[str], list[str]]:
    """Feed the plugin's events to livekit-agents' ``AudioRecognition`` in STT turn-detection
    mode (no LiveKit server, no room): the user turns it ends and the preemptive generations it
    starts, by their transcripts."""
    from livekit.agents import AgentSession, llm
    from livekit.agents.voice.audio_recognition import AudioRecognition
    from livekit.agents.voice.endpointing import BaseEndpointing

    ended: list[str] = []
    preemptive: list[str] = []

    class Hooks:
        interruption_by_audio_activity_enabled = False

        def on_end_of_turn(self, info: Any) -> bool:
            ended.append(info.new_transcript)
            return True

        def on_preemptive_generation(self, info: Any) -> None:
            preemptive.append(info.new_transcript)

        def retrieve_chat_ctx(self) -> llm.ChatContext:
            return llm.ChatContext()

        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: None

    recognition = AudioRecognition(
        AgentSession(),
        hooks=Hooks(),  # type: ignore[arg-type]
        endpointing=BaseEndpointing(0.0, 0.0),
        stt=None,
        vad=None,
        interruption_detection=None,
        turn_detection="stt",
    )
    for event in events:
        await recognition._on_stt_event(event)
        await asyncio.sleep(0.01)  # its end-of-turn task runs
    await asyncio.sleep(0.2)
    return ended, preemptive

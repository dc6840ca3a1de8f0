"""The native streaming protocol against a real server over real WebSockets."""

from __future__ import annotations

import asyncio
import itertools
import json

import httpx
import numpy as np
import pytest
import websockets

from tests.api.conftest import Server, Session, frames_of, pcm16, stream_audio
from tests.conftest import PROSE, Synth, corpus_wer, recordings
from voxindex.audio import decode_file
from voxindex.models.whisper import WhisperModel
from voxindex.transcribe import OfflineTranscriber

GAP = np.zeros(12800, dtype=np.float32)  # 0.8 s: longer than the default 500 ms endpointing


def conversation(index: int, synth: Synth) -> tuple[np.ndarray, str]:
    """Client ``index``'s audio: the real recordings in its own order, then two read sentences."""
    recs = recordings("pocketsphinx")
    order = recs[index:] + recs[:index]
    parts, words = [GAP], []
    for rec in order:
        parts += [decode_file(rec.path), GAP]
        words.append(rec.transcript)
    for sentence in PROSE[2 * index : 2 * index + 2]:
        parts += [synth(sentence), GAP]
        words.append(sentence)
    return np.concatenate(parts), " ".join(words)


def assert_well_formed(session: Session) -> None:
    """Ready first, closed last, finals in order with monotonic times inside the audio."""
    kinds = [m["type"] for m in session.messages]
    assert kinds[0] == "ready" and kinds[-1] == "closed", kinds
    assert session.close_code == 1000
    finals = session.of("final")
    assert [f["segment_id"] for f in finals] == list(range(len(finals)))
    last_end = 0.0
    for f in finals:
        assert last_end - 0.05 <= f["start"] <= f["end"] <= session.audio_seconds + 0.01, f
        last_end = f["end"]
        times = [(w["start"], w["end"]) for w in f["words"]]
        assert all(a <= b for a, b in times)
        assert [a for a, _ in times] == sorted(a for a, _ in times)
        assert all(0 < w["confidence"] <= 1 for w in f["words"])
        assert " ".join(w["word"] for w in f["words"]) == f["text"]
    assert session.of("closed")[0]["segments"] == len(finals)
    # no transcript message after the final of its segment
    for i, m in enumerate(session.messages):
        if m["type"] == "interim":
            assert all(
                f["segment_id"] != m["segment_id"] for f in session.of("final")[: _finals_before(session, i)]
            )


def _finals_before(session: Session, index: int) -> int:
    return sum(1 for m in session.messages[:index] if m["type"] == "final")


async def test_four_concurrent_real_time_clients(server: Server, synth: Synth, tiny: WhisperModel) -> None:
    convos = [conversation(i, synth) for i in range(4)]
    sessions = await asyncio.gather(*(stream_audio(server.ws, audio) for audio, _ in convos))
    offline = OfflineTranscriber(tiny)
    streamed, batch = [], []
    for session, (audio, reference) in zip(sessions, convos, strict=True):
        assert_well_formed(session)
        assert session.of("interim"), "interim results are on by default"
        assert len(session.of("speech_started")) >= 6
        streamed.append((reference, session.final_text))
        batch.append((reference, offline.transcribe(audio).text))
    stream_wer, offline_wer = corpus_wer(streamed), corpus_wer(batch)
    print(f"streamed WER {stream_wer:.3f}, offline WER {offline_wer:.3f}")
    assert stream_wer <= offline_wer + 0.02, (stream_wer, offline_wer, streamed)


async def test_interims_grow_into_the_final(server: Server, synth: Synth) -> None:
    sentence = PROSE[7]
    session = await stream_audio(server.ws, np.concatenate([GAP, synth(sentence), GAP]), speed=1.0)
    interims = session.of("interim")
    assert len(interims) >= 2
    final = session.of("final")[0]
    for m in interims:
        assert m["text"].startswith(m["stable_text"])
    for before, after in itertools.pairwise(interims):  # no interim takes back what it called stable
        assert after["stable_text"].startswith(before["stable_text"])
    # the final re-reads the whole utterance, so it may correct a word the partial readings heard
    # half-spoken, but it never has fewer words than were called stable
    assert len(final["words"]) >= len(interims[-1]["stable_text"].split())
    assert corpus_wer([(sentence, final["text"])]) <= 0.10


async def test_flush_finalizes_without_waiting_for_silence(server: Server, synth: Synth) -> None:
    speech = synth(PROSE[4])
    async with websockets.connect(f"{server.ws}/v1/stream") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames_of(pcm16(speech)):  # no trailing silence: no endpoint can fire
            await ws.send(frame)
        await ws.send(json.dumps({"type": "flush"}))
        final = None
        while final is None:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
            assert message["type"] in ("speech_started", "interim", "final"), message
            if message["type"] == "final":
                final = message
        assert corpus_wer([(PROSE[4], final["text"])]) <= 0.15
        await ws.send(json.dumps({"type": "close"}))
        rest = [json.loads(m) async for m in ws]
        assert rest[-1] == {
            "type": "closed",
            "duration": pytest.approx(speech.size / 16000, abs=0.05),
            "segments": 1,
        }


async def test_close_sends_every_final_then_closed(server: Server, synth: Synth) -> None:
    # the last sentence has no trailing silence: only `close` can finalize it
    audio = np.concatenate([synth(PROSE[0]), GAP, synth(PROSE[1])])
    session = await stream_audio(server.ws, audio, speed=4.0)
    assert_well_formed(session)
    assert len(session.of("final")) >= 2
    assert "launch" in session.of("final")[-1]["text"].lower()


async def test_silence_yields_no_text(server: Server) -> None:
    rng = np.random.default_rng(1)
    audio = np.concatenate([np.zeros(16000 * 3), 0.002 * rng.standard_normal(16000 * 4)]).astype(np.float32)
    session = await stream_audio(server.ws, audio, speed=4.0)
    assert [m["type"] for m in session.messages] == ["ready", "closed"]
    assert session.of("closed")[0]["segments"] == 0


async def test_other_sample_rates_and_float_encoding(server: Server, synth: Synth) -> None:
    from voxindex.audio import StreamResampler

    speech = np.concatenate([GAP, synth(PROSE[5]), GAP])
    r = StreamResampler(16000, 8000)
    narrow = np.concatenate([r.push(speech), r.flush()])
    as_f32 = speech.astype("<f4").tobytes()
    a, b = await asyncio.gather(
        stream_audio(server.ws, narrow, speed=4.0, params="?sample_rate=8000"),
        stream_audio(
            server.ws,
            speech,
            speed=4.0,
            params="?encoding=pcm_f32le&interim_results=false",
            frames=[as_f32[i : i + 6400] for i in range(0, len(as_f32), 6400)],
        ),
    )
    assert corpus_wer([(PROSE[5], a.final_text)]) <= 0.15
    assert corpus_wer([(PROSE[5], b.final_text)]) <= 0.10
    assert not b.of("interim")


async def test_health_reports_the_engine(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        health = (await client.get(f"{server.url}/health")).json()
    assert health["status"] == "ok" and health["model"] == "tiny.en"

"""Who said it: live speaker labels on real speech of distinct people, on every surface.

A real server on loopback; conversations built from the bundled recordings of three different
people (tests/conversations.py). Labels are checked against the turns each word falls in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from livekit.agents import stt as lk_stt

from tests.api.conftest import Server, pcm16, stream_audio
from tests.api.test_deepgram_ws import deepgram_plugin_events
from tests.conftest import KeyedServer
from tests.conversations import Turn, attribution, conversation, monologue, speaker_of, voices
from voxindex.audio import Float32Array

CLIPS = voices()
TWO = conversation(CLIPS, ["librivox", "cards"], turns=6, seed=3)


def labelled_words(finals: list[dict[str, Any]], turns: list[Turn]) -> list[tuple[int, int]]:
    """(true speaker, label) of every final word that falls in a turn."""
    pairs = []
    for f in finals:
        for w in f["words"]:
            truth = speaker_of(turns, w["start"], w["end"])
            if truth is not None:
                pairs.append((truth, w["speaker"]))
    return pairs


@dataclass
class Diarized:
    stream_id: str
    finals: list[dict[str, Any]]


@pytest.fixture(scope="module")
def two_speakers(server: Server) -> Diarized:
    audio, _ = TWO
    session = asyncio.run(stream_audio(server.ws, audio, speed=2.0, params="?diarize=true"))
    assert session.close_code == 1000
    return Diarized(session.of("ready")[0]["stream_id"], session.of("final"))


def test_a_two_speaker_stream_gets_two_labels_that_follow_the_turns(two_speakers: Diarized) -> None:
    _, turns = TWO
    pairs = labelled_words(two_speakers.finals, turns)
    assert len(pairs) >= 40
    assert {label for _, label in pairs} == {0, 1}
    assert attribution(pairs) >= 0.9
    # each voice's words mostly carry one label, and the two voices' labels differ
    label_of = {}
    for speaker in (0, 1):
        said = [lab for truth, lab in pairs if truth == speaker]
        label_of[speaker] = max(set(said), key=said.count)
    assert label_of[0] != label_of[1]
    for f in two_speakers.finals:  # a final's speaker is the label of most of its words' time
        time_of: dict[int, float] = {}
        for w in f["words"]:
            time_of[w["speaker"]] = time_of.get(w["speaker"], 0.0) + w["end"] - w["start"]
        assert f["speaker"] == max(time_of, key=lambda k: time_of[k])
        assert all(0.0 <= w["speaker_confidence"] <= 1.0 for w in f["words"])


def test_search_filters_by_speaker_and_hits_carry_it(server: Server, two_speakers: Diarized) -> None:
    def hits(q: str, speaker: int) -> list[dict[str, Any]]:
        params = {"q": q, "mode": "keyword", "stream_id": two_speakers.stream_id, "speaker": speaker}
        return list(httpx.get(f"{server.url}/v1/search", params=params).json()["hits"])

    deadline = time.monotonic() + 30
    while not hits(two_speakers.finals[-1]["text"], two_speakers.finals[-1]["speaker"]):
        assert time.monotonic() < deadline, "the diarized stream's finals never became searchable"
        time.sleep(0.2)
    assert {f["speaker"] for f in two_speakers.finals} == {0, 1}
    for f in two_speakers.finals:
        same, other = hits(f["text"], f["speaker"]), hits(f["text"], 1 - f["speaker"])
        assert f["segment_id"] in [h["segment_index"] for h in same]
        assert all(h["speaker"] == f["speaker"] for h in same)
        assert f["segment_id"] not in [h["segment_index"] for h in other]
        assert all(h["speaker"] == 1 - f["speaker"] for h in other)
    bad = httpx.get(f"{server.url}/v1/search", params={"q": "x", "speaker": -1})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_transcript_exports_name_the_speakers(server: Server, two_speakers: Diarized) -> None:
    url = f"{server.url}/v1/streams/{two_speakers.stream_id}/transcript"
    first, last = two_speakers.finals[0], two_speakers.finals[-1]
    txt = httpx.get(url, params={"format": "txt"}).text.splitlines()
    assert txt == [f"Speaker {f['speaker']}: {f['text']}" for f in two_speakers.finals]
    vtt = httpx.get(url, params={"format": "vtt"}).text
    assert f"<v Speaker {first['speaker']}>{first['text']}" in vtt
    srt = httpx.get(url, params={"format": "srt"}).text
    assert f"Speaker {last['speaker']}: {last['text']}" in srt
    stored = httpx.get(url).json()["segments"]
    assert [s["speaker"] for s in stored] == [f["speaker"] for f in two_speakers.finals]
    assert [w["speaker"] for s in stored for w in s["words"]] == [
        w["speaker"] for f in two_speakers.finals for w in f["words"]
    ]


async def test_a_single_speaker_keeps_one_label(server: Server) -> None:
    audio = monologue(CLIPS["librivox"], seconds=60.0, seed=1)
    session = await stream_audio(server.ws, audio, speed=3.0, params="?diarize=true")
    labels = [w["speaker"] for f in session.of("final") for w in f["words"]]
    assert len(labels) >= 100
    assert labels.count(0) / len(labels) >= 0.98


async def test_labels_survive_a_flush(server: Server) -> None:
    """A flush ends an utterance, not the speakers: each voice keeps its label after it."""
    gap = np.zeros(8000, np.float32)
    lines = [
        (0, CLIPS["librivox"][0]),
        (1, CLIPS["cards"][4]),
        (0, CLIPS["librivox"][2]),
        (1, CLIPS["cards"][1]),
    ]
    parts: list[list[Float32Array]] = [[gap], [gap]]
    turns, t = [], 0.5
    for i, (speaker, clip) in enumerate(lines):
        parts[i // 2] += [clip, gap]
        turns.append(Turn(t, t + clip.size / 16000, speaker))
        t += (clip.size + gap.size) / 16000 + (0.5 if i == 1 else 0.0)
    finals: list[dict[str, Any]] = []
    # endpointing of 2 s: the half-second pauses end no utterance; only the flush does
    async with websockets.connect(f"{server.ws}/v1/stream?diarize=true&endpointing_ms=2000") as ws:
        for i, part in enumerate(parts):
            data = pcm16(np.concatenate(part))
            for k in range(0, len(data), 6400):
                await ws.send(data[k : k + 6400])
                await asyncio.sleep(0.1)
            await ws.send(json.dumps({"type": "flush" if i == 0 else "close"}))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                m = json.loads(raw)
                if m["type"] == "final":
                    finals.append(m)
    flushed_at = sum(p.size for p in parts[0]) / 16000
    before = [f["end"] <= flushed_at for f in finals]
    assert before[0] and not before[-1]  # finals of both sides of the flush
    pairs = labelled_words(finals, turns)
    assert {label for _, label in pairs} == {0, 1}
    assert attribution(pairs) >= 0.9  # one mapping for both sides of the flush


async def test_diarize_is_off_by_default(server: Server) -> None:
    session = await stream_audio(server.ws, np.concatenate([CLIPS["cards"][4], np.zeros(16000, np.float32)]))
    final = session.of("final")[0]
    assert "speaker" not in final and all("speaker" not in w for w in final["words"])


async def test_bad_diarize_value_is_refused(server: Server) -> None:
    session = await stream_audio(server.ws, np.zeros(1600, np.float32), params="?diarize=maybe")
    assert session.close_code == 4400
    assert session.of("error")[0]["code"] == "invalid_request"


# ---------------- the real LiveKit Deepgram plugin, diarization on ----------------
async def test_the_deepgram_plugin_reads_speakers_as_deepgram_sends_them(keyed_server: KeyedServer) -> None:
    audio, turns = TWO
    events = await deepgram_plugin_events(keyed_server, audio, speed=2.0, enable_diarization=True)
    finals = [e.alternatives[0] for e in events if e.type == lk_stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert finals and all(f.speaker_id in ("S0", "S1") for f in finals)
    assert {f.speaker_id for f in finals} == {"S0", "S1"}
    # each final's speaker is the true speaker of most of its time, under one mapping
    pairs = []
    for f in finals:
        truth = speaker_of(turns, f.start_time, f.end_time)
        if truth is not None and f.speaker_id is not None:
            pairs.append((truth, int(f.speaker_id[1:])))
    assert attribution(pairs) >= 0.8

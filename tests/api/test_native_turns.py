"""Turn events on the native protocol (``/v1/stream?turns=true``) against a real server."""

from __future__ import annotations

import json

import numpy as np
import websockets

from tests.api.conftest import Server, frames_of, pcm16, stream_audio
from tests.conftest import corpus_wer
from tests.turn_corpus import HUMAN, build, session


def human(name: str):  # type: ignore[no-untyped-def]
    return build(next(s for s in HUMAN if s.name == name))


async def test_turn_events_hold_a_pause_mid_sentence_and_end_each_turn_once(server: Server) -> None:
    amiable, forward = human("amiable"), human("forward")  # "He might even have | 1.2 s | been made"
    audio, placed = session([amiable, forward], gap_s=2.0)
    s = await stream_audio(server.ws, audio, params="?turns=true&eager_eot_threshold=0.5")
    kinds = [m["type"] for m in s.messages]
    turns = [m for m in s.messages if m["type"] in ("turn_started", "end_of_turn")]
    assert [m["type"] for m in turns] == ["turn_started", "end_of_turn"] * 2, kinds
    assert [m["turn_index"] for m in turns] == [0, 0, 1, 1]
    ends = s.of("end_of_turn")
    assert corpus_wer([(t.text, m["transcript"]) for (t, _), m in zip(placed, ends, strict=True)]) <= 0.25
    for m in ends:
        assert m["transcript"] == " ".join(w["word"] for w in m["words"])
        assert m["start"] < m["end"] and 0.7 <= m["end_of_turn_probability"] <= 1.0
        # the eager end before it said the same (nothing resumed in between)
        i = s.messages.index(m)
        eager = [
            e
            for e in s.messages[:i]
            if e["type"] == "eager_end_of_turn" and e["turn_index"] == m["turn_index"]
        ]
        resumed = [
            e for e in s.messages[:i] if e["type"] == "turn_resumed" and e["turn_index"] == m["turn_index"]
        ]
        if eager and not resumed:
            assert eager[-1]["transcript"] == m["transcript"]
    # the native events go on as they were: interims, finals (stored), speech_started/ended
    assert "interim" in kinds and len(s.of("final")) >= 2 and kinds[-1] == "closed"
    assert not any(m["type"] == "turn_update" for m in s.messages)  # interims tell that


async def test_flush_ends_the_turn_and_turn_thresholds_are_checked(server: Server) -> None:
    forward = human("forward")
    speech = forward.audio[: round(forward.end * 16000)]  # no silence after it
    async with websockets.connect(f"{server.ws}/v1/stream?turns=true") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames_of(pcm16(np.concatenate([np.zeros(8000, np.float32), speech]))):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "flush"}))
        while (m := json.loads(await ws.recv()))["type"] != "end_of_turn":
            pass
        assert corpus_wer([(forward.text, m["transcript"])]) <= 0.25
        await ws.send(json.dumps({"type": "configure", "eot_threshold": 0.2}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and "eot_threshold" in error["message"]
        await ws.send(json.dumps({"type": "configure", "eot_threshold": 0.9, "keyterms": ["meters"]}))
        await ws.send(json.dumps({"type": "close"}))
        while (m := json.loads(await ws.recv()))["type"] != "closed":
            assert m["type"] != "error", m
    for bad in ("turns=true&eot_threshold=0.2", "turns=true&eager_eot_threshold=0.95", "turns=maybe"):
        async with websockets.connect(f"{server.ws}/v1/stream?{bad}") as ws:
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and error["code"] == "invalid_request"
    async with websockets.connect(f"{server.ws}/v1/stream") as ws:  # no turns: no thresholds
        await ws.recv()
        await ws.send(json.dumps({"type": "configure", "eot_threshold": 0.9}))
        assert "turns=true" in json.loads(await ws.recv())["message"]


async def test_without_turns_nothing_changes(server: Server) -> None:
    unless = human("unless")
    s = await stream_audio(server.ws, np.concatenate([unless.audio, np.zeros(16000, np.float32)]))
    assert not [m for m in s.messages if "turn" in m["type"]]
    assert len(s.of("final")) == 2  # the 1 s pause mid-sentence ends an utterance, as it always did

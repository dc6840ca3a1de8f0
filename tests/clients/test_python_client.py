"""voxindex_client against a real server: streaming, flush, close, error events, reconnects."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import voxindex_client as vx

from tests.api.conftest import pcm16
from tests.conftest import PROSE, KeyedServer, Synth, corpus_wer

GAP = np.zeros(16000, np.float32)


async def play(session: vx.Session, audio: np.ndarray, speed: float = 4.0) -> None:
    data = pcm16(audio)
    for i in range(0, len(data), 3200):
        await session.send(data[i : i + 3200])
        await asyncio.sleep(0.1 / speed)


async def test_a_session_yields_typed_events_in_order(keyed_server: KeyedServer, synth: Synth) -> None:
    events: list[vx.Event] = []
    async with vx.connect(keyed_server.url, token=keyed_server.api_key) as session:
        await play(session, np.concatenate([GAP, synth(PROSE[2]), GAP]))
        await session.send(b"\x01")  # half a sample: the server says so at the end
        await session.close()
        events = [e async for e in session]
    kinds = [type(e) for e in events]
    assert kinds[0] is vx.Ready and kinds[-1] is vx.Closed
    assert kinds.index(vx.SpeechStarted) < kinds.index(vx.Final) < kinds.index(vx.SpeechEnded)
    assert vx.Interim in kinds
    finals = [e for e in events if isinstance(e, vx.Final)]
    assert corpus_wer([(PROSE[2], " ".join(f.text for f in finals))]) <= 0.1
    final = finals[0]
    assert final.words and isinstance(final.words[0], vx.Word) and final.stream_id == session.stream_id
    errors = [e for e in events if isinstance(e, vx.Error)]
    assert [e.code for e in errors] == ["bad_audio"]


async def test_flush_finalizes_now(keyed_server: KeyedServer, synth: Synth) -> None:
    async with vx.connect(keyed_server.url, token=keyed_server.api_key) as session:
        await play(session, synth(PROSE[3]), speed=10)  # no trailing silence
        await session.flush()
        before_close = []
        async for event in session:
            if isinstance(event, vx.Final):
                before_close.append(event.text)
                if corpus_wer([(PROSE[3], " ".join(before_close))]) <= 0.15:
                    break  # everything said is final, and the stream is still open
        await session.close()
        rest = [e async for e in session]
        assert isinstance(rest[-1], vx.Closed)
    assert corpus_wer([(PROSE[3], " ".join(before_close))]) <= 0.15


async def test_refusals_raise_with_the_servers_code(keyed_server: KeyedServer) -> None:
    with pytest.raises(vx.VoxindexError) as refused:
        async with vx.connect(keyed_server.url, token="vxk_not_a_key"):
            pass
    assert refused.value.code == "unauthenticated" and refused.value.close_code == 4401


async def test_a_dropped_connection_reconnects_and_times_go_on(restartable: Any, synth: Synth) -> None:
    start, stop = restartable
    url = start()
    first, second = np.concatenate([GAP, synth(PROSE[4]), GAP]), np.concatenate([GAP, synth(PROSE[5]), GAP])
    events: list[vx.Event] = []
    async with vx.connect(url, retry_interval_s=0.5, max_retries=20) as session:

        async def consume() -> None:
            async for event in session:
                events.append(event)

        reader = asyncio.create_task(consume())
        await play(session, first)
        while not any(isinstance(e, vx.Final) for e in events):
            await asyncio.sleep(0.1)
        await asyncio.to_thread(stop)
        await asyncio.to_thread(start)
        await play(session, second)
        await session.close()
        await asyncio.wait_for(reader, 60)
    reconnected = [e for e in events if isinstance(e, vx.Reconnected)]
    assert len(reconnected) == 1 and reconnected[0].offset == pytest.approx(first.size / 16000, abs=0.01)
    finals = [e for e in events if isinstance(e, vx.Final)]
    assert corpus_wer([(f"{PROSE[4]} {PROSE[5]}", " ".join(f.text for f in finals))]) <= 0.15
    later = [f for f in finals if PROSE[5].split()[1].lower() in f.text.lower()]
    assert later and later[0].start >= reconnected[0].offset  # continuous times across the reconnect
    assert len({f.stream_id for f in finals}) == 2

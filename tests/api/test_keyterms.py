"""Key terms and conversation context over the wire: the native protocol's ``keyterms`` query and
``configure`` / ``context`` messages, and the real ``livekit-plugins-deepgram`` with ``keyterm``,
on a real server with tiny.en and Piper speech of names tiny.en gets wrong unprimed."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import websockets

from tests.api.conftest import Server, frames_of, pcm16
from tests.api.test_deepgram_ws import deepgram_plugin_events
from tests.conftest import KeyedServer, Synth, normalized_words

GAP = np.zeros(16000, dtype=np.float32)
SIOBHAN = "Please forward the invoice to Siobhan Nguyen before Friday."
XIOMARA = "Ask Xiomara whether the tunnel is up."
PLAIN = "The meeting moved to Thursday afternoon."
REFILL = "Refill the Lisinopril and the Atorvastatin prescriptions."


def says(text: str, term: str) -> bool:
    return " ".join(normalized_words(term)) in " ".join(normalized_words(text))


async def native_finals(
    server: Server, parts: list[np.ndarray | dict[str, object]], query: str = ""
) -> list[dict[str, object]]:
    """Stream audio parts (twice real time) and control messages in order, each control sent
    once every final of the audio before it has arrived; every message the server sent."""
    messages: list[dict[str, object]] = []
    async with websockets.connect(f"{server.ws}/v1/stream?{query}") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"

        async def read() -> None:
            async for raw in ws:
                messages.append(json.loads(raw))

        reader = asyncio.create_task(read())
        spoken = 0  # audio parts with speech sent so far
        for part in parts:
            if isinstance(part, dict):
                async with asyncio.timeout(30):
                    while sum(m["type"] == "speech_ended" for m in messages) < spoken:
                        await asyncio.sleep(0.05)
                await ws.send(json.dumps(part))
                continue
            spoken += bool(np.abs(part).max() > 0)
            for frame in frames_of(pcm16(part), 3200):
                await ws.send(frame)
                await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "close"}))
        await asyncio.wait_for(reader, 60)
    return messages


def finals(messages: list[dict[str, object]]) -> list[str]:
    return [str(m["text"]) for m in messages if m["type"] == "final"]


async def test_keyterms_on_the_query_and_a_configure_message_mid_stream(server: Server, synth: Synth) -> None:
    speech = np.concatenate([GAP, synth(SIOBHAN), GAP])
    messages = await native_finals(
        server,
        [speech, {"type": "configure", "keyterms": ["Siobhan Nguyen"]}, speech,
         {"type": "configure", "keyterms": "Siobhan"}, np.concatenate([synth(PLAIN), GAP])],
    )  # fmt: skip
    texts = finals(messages)
    assert not says(texts[0], "Siobhan Nguyen"), texts  # unprimed, tiny.en misspells the name
    assert says(texts[1], "Siobhan Nguyen"), texts
    assert not says(" ".join(texts[2:]), "Siobhan"), texts  # never inserted where it was not said
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["invalid_request"] and "list" in str(errors[0]["message"])
    assert messages[-1]["type"] == "closed"
    queried = finals(await native_finals(server, [speech], "keyterms=Siobhan%20Nguyen&keyterms=Grafana"))
    assert says(" ".join(queried), "Siobhan Nguyen"), queried
    assert not any("grafana" in t.lower() for t in queried)  # the prompt never leaks into text


async def test_context_messages_prime_the_next_utterance(server: Server, synth: Synth) -> None:
    speech = np.concatenate([GAP, synth(XIOMARA), GAP])
    without = finals(await native_finals(server, [speech]))
    asked = {"type": "context", "text": "I can check that. Is it Xiomara's tunnel or Tadeusz's?"}
    with_context = finals(await native_finals(server, [np.zeros(1600, np.float32), asked, speech]))
    assert not says(" ".join(without), "Xiomara"), without
    assert says(" ".join(with_context), "Xiomara"), with_context
    assert "tadeusz" not in " ".join(with_context).lower()


async def test_the_livekit_deepgram_plugin_sends_keyterm(keyed_server: KeyedServer, synth: Synth) -> None:
    """The unmodified ``livekit-plugins-deepgram`` with ``keyterm=[...]`` (Nova-3's parameter):
    the names come out right, and a sentence without them gets none."""
    audio = np.concatenate([GAP, synth(SIOBHAN), GAP, synth(REFILL), GAP, synth(PLAIN), GAP])
    terms = ["Siobhan Nguyen", "Lisinopril", "Atorvastatin"]
    plain_events = await deepgram_plugin_events(keyed_server, audio, speed=2.0)
    primed_events = await deepgram_plugin_events(keyed_server, audio, speed=2.0, keyterm=terms)
    plain = [e.alternatives[0].text for e in plain_events if e.type.name == "FINAL_TRANSCRIPT"]
    primed = [e.alternatives[0].text for e in primed_events if e.type.name == "FINAL_TRANSCRIPT"]
    assert not any(says(" ".join(plain), t) for t in terms), plain
    assert all(says(" ".join(primed), t) for t in terms), primed
    last = " ".join(t for t in primed if "thursday" in t.lower())
    assert last and not any(says(last, t) for t in terms), primed


def test_deepgram_keyterm_and_keywords_become_key_terms() -> None:
    import pytest
    from starlette.datastructures import QueryParams

    from voxindex.api.deepgram_ws import listen_keyterms
    from voxindex.errors import InvalidRequestError

    q = QueryParams("keyterm=Siobhan+Nguyen&keyterm=Grafana&keywords=Xiomara:2&keywords=um:-10&keywords=Okta")
    assert listen_keyterms(q) == ("Siobhan Nguyen", "Grafana", "Xiomara", "Okta")  # -10: suppressed
    with pytest.raises(InvalidRequestError, match="word:intensifier"):
        listen_keyterms(QueryParams("keywords=Okta:lots"))

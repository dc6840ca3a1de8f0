"""Translation into English: ``task=translate`` on live streams, ``/v1/audio/translations`` with
the real ``openai`` client, our LiveKit plugin's ``source_languages``; on the multilingual base
model, with non-English speech synthesized by espeak-ng (no real non-English recording ships
offline: ../shared/speech and the PyPI voices are English)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import websockets

from tests.api.conftest import Server, frames_of, pcm16
from tests.api.test_openai_rest import wav_bytes
from tests.conftest import KeyedServer, frames_48k, normalized_words, serve_keyed
from voxindex.audio import decode_file
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel

GAP = np.zeros(8000, dtype=np.float32)
# what espeak-ng says, and English words a translation of it must hold (base, greedy)
GERMAN = (
    "Der Hund schläft im Garten, und die Katze trinkt Milch. Ich möchte bitte ein Glas Wasser und zwei Äpfel."
)
ENGLISH_WORDS = {"dog", "garden", "cat", "milk", "glass", "water", "apple"}


def espeak(language: str, text: str) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "say.wav"
        subprocess.run(["espeak-ng", "-v", language, "-s", "140", "-w", str(path), text], check=True)
        return np.concatenate([GAP, decode_file(path), GAP])


def english(text: str) -> set[str]:
    """The expected English words in ``text`` (plurals counted)."""
    words = normalized_words(text)
    return {w for w in ENGLISH_WORDS if w in words or w + "s" in words}


@pytest.fixture(scope="module")
def base_server(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    base: WhisperModel = load_model("base", device="cpu", cache_dir=cache_dir)
    with serve_keyed(base, tmp_path_factory.mktemp("base"), max_streams=4) as srv:
        yield srv


def test_openai_translations_give_english(base_server: KeyedServer) -> None:
    speech = wav_bytes(espeak("de", GERMAN))
    with openai.OpenAI(base_url=f"{base_server.url}/v1", api_key=base_server.api_key, max_retries=0) as c:
        translated = c.audio.translations.create(model="whisper-1", file=("de.wav", speech))
        verbose = c.audio.translations.create(
            model="whisper-1", file=("de.wav", speech), response_format="verbose_json"
        )
        transcribed = c.audio.transcriptions.create(model="whisper-1", file=("de.wav", speech))
    assert len(english(translated.text)) >= 3, translated.text
    assert "wasser" not in translated.text.lower()
    assert "wasser" in transcribed.text.lower() and not english(
        transcribed.text
    )  # the same audio, untranslated
    assert verbose.task == "translate" and verbose.language == "german"


async def stream_finals(url: str, audio: np.ndarray) -> list[dict[str, object]]:
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames_of(pcm16(audio), 3200):
            await ws.send(frame)
            await asyncio.sleep(0.02)
        await ws.send(json.dumps({"type": "close"}))
        messages = [json.loads(raw) async for raw in ws]
    return [m for m in messages if m["type"] == "final"]


async def test_a_live_stream_translates(base_server: KeyedServer) -> None:
    speech = espeak("de", GERMAN)
    query = f"access_token={base_server.api_key}&language=de"
    translated = await stream_finals(f"{base_server.ws}/v1/stream?{query}&task=translate", speech)
    text = " ".join(str(f["text"]) for f in translated)
    assert len(english(text)) >= 3 and "wasser" not in text.lower(), text
    assert all(f["language"] == "de" for f in translated)  # the language spoken


async def test_the_livekit_plugin_reports_source_languages(base_server: KeyedServer) -> None:
    from livekit.agents import stt as lk_stt
    from livekit.plugins import voxindex

    stt = voxindex.STT(base_url=base_server.url, api_key=base_server.api_key, language="de", task="translate")
    stream = stt.stream()
    events: list[lk_stt.SpeechEvent] = []

    async def collect() -> None:
        async for event in stream:
            events.append(event)

    collector = asyncio.create_task(collect())
    for frame in frames_48k(espeak("de", GERMAN)):
        stream.push_frame(frame)
        await asyncio.sleep(frame.duration / 2)
    stream.end_input()
    await asyncio.wait_for(collector, 60)
    await stt.aclose()
    finals = [e.alternatives[0] for e in events if e.type == lk_stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert finals and len(english(" ".join(f.text for f in finals))) >= 3
    assert all(f.language == "en" and f.source_languages == ["de"] for f in finals)


async def test_translation_and_unknown_languages_are_refused_clearly(server: Server) -> None:
    """An English-only model cannot translate: 4400 ``unsupported_language`` (400 on OpenAI's route)."""
    async with websockets.connect(f"{server.ws}/v1/stream?task=translate") as ws:
        message = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert message["code"] == "unsupported_language" and "translate" in str(message["message"])
    assert ws.close_code == 4400
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as c,
        pytest.raises(openai.BadRequestError) as bad,
    ):
        c.audio.translations.create(model="whisper-1", file=("a.wav", wav_bytes(GAP)))
    assert bad.value.code == "unsupported_language"


async def test_a_language_the_model_does_not_know_is_refused(base_server: KeyedServer) -> None:
    async with websockets.connect(
        f"{base_server.ws}/v1/stream?access_token={base_server.api_key}&language=xx"
    ) as ws:
        message = json.loads(await ws.recv())
    assert message["code"] == "unsupported_language" and "'xx'" in str(message["message"])


def test_a_recording_is_translated_and_not_reused_for_a_transcription(base_server: KeyedServer) -> None:
    """``POST /v1/recordings?task=translate``: the stored, searchable text is English; the same
    file uploaded to be transcribed is read again (a translation is not its transcript)."""
    import httpx

    auth = {"Authorization": f"Bearer {base_server.api_key}"}
    data = wav_bytes(espeak("de", GERMAN))

    def indexed(query: str) -> tuple[dict[str, object], str]:
        made = httpx.post(
            f"{base_server.url}/v1/recordings{query}", files={"file": ("de.wav", data)}, headers=auth
        )
        assert made.status_code == 202, made.text
        rid = made.json()["id"]
        deadline = time.monotonic() + 120
        while (status := httpx.get(f"{base_server.url}/v1/recordings/{rid}", headers=auth).json())[
            "status"
        ] not in (
            "indexed",
            "failed",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        segments = httpx.get(f"{base_server.url}/v1/streams/{rid}/transcript", headers=auth).json()[
            "segments"
        ]
        return status, " ".join(s["text"] for s in segments)

    status, text = indexed("?task=translate")
    assert status["status"] == "indexed" and status["task"] == "translate"
    assert len(english(text)) >= 3 and "wasser" not in text.lower(), text
    status, text = indexed("")
    assert status["task"] == "transcribe" and status["reused_from"] is None
    assert "wasser" in text.lower(), text
    refused = httpx.post(
        f"{base_server.url}/v1/recordings?task=summarize", files={"file": ("de.wav", data)}, headers=auth
    )
    assert refused.status_code == 400 and "task" in refused.text

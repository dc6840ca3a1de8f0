"""``POST /v1/audio/transcriptions`` answers the real ``openai`` client and LiveKit's OpenAI STT."""

from __future__ import annotations

import io
import itertools
import wave
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from livekit import rtc
from livekit.plugins import openai as lk_openai

from tests.conftest import FIXTURES, PROSE, KeyedServer, Synth, corpus_wer, load_fixture, onset

REFERENCE = "go forward ten meters"


@pytest.fixture
def client(keyed_server: KeyedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=keyed_server.api_key, max_retries=0) as c:
        yield c


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def test_json_text_and_subtitles(client: openai.OpenAI) -> None:
    path = FIXTURES / "goforward.wav"
    result = client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
    assert corpus_wer([(REFERENCE, result.text)]) <= 0.1
    text = client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="text")
    assert corpus_wer([(REFERENCE, str(text))]) <= 0.1
    srt = str(
        client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="srt")
    )
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = str(
        client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="vtt")
    )
    assert vtt.startswith("WEBVTT")


def test_verbose_json_with_word_timestamps(client: openai.OpenAI, synth: Synth) -> None:
    clip = synth(PROSE[6])
    audio = np.concatenate([np.zeros(8000, np.float32), clip, np.zeros(8000, np.float32)])
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("speech.wav", wav_bytes(audio), "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert corpus_wer([(PROSE[6], result.text)]) <= 0.1
    assert result.language == "english" and result.duration == pytest.approx(audio.size / 16000, abs=0.01)
    assert result.segments and result.segments[0].start < result.segments[-1].end <= result.duration + 0.01
    words = result.words or []
    assert len(words) == len(result.text.split())
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    spoken = 0.5 + onset(clip)  # the half second of silence, then the voice's own lead-in
    assert abs(words[0].start - spoken) <= 0.5, (words[0].start, spoken)


def test_the_prompt_primes_spelling(client: openai.OpenAI, synth: Synth) -> None:
    upload = ("a.wav", wav_bytes(synth("The invoice goes to Kowalczyk and Nguyen on Friday.")), "audio/wav")
    plain = client.audio.transcriptions.create(model="whisper-1", file=upload)
    primed = client.audio.transcriptions.create(model="whisper-1", file=upload, prompt="Kowalczyk, Nguyen")
    names = ("Kowalczyk", "Nguyen")
    assert all(n in primed.text for n in names) and not all(n in plain.text for n in names)


def test_uploads_are_searchable(keyed_server: KeyedServer) -> None:
    headers = {"Authorization": f"Bearer {keyed_server.api_key}"}
    response = httpx.post(
        f"{keyed_server.url}/v1/audio/transcriptions",
        files={"file": ("go.wav", (FIXTURES / "goforward.wav").read_bytes(), "audio/wav")},
        data={"model": "whisper-1"},
        headers=headers,
        timeout=60,
    )
    stream_id = response.headers["x-voxindex-stream-id"]
    stored = httpx.get(f"{keyed_server.url}/v1/streams/{stream_id}/transcript", headers=headers).json()
    assert " ".join(s["text"] for s in stored["segments"]) == response.json()["text"]
    # within the upload's own stream: the shared server holds many recordings of the same words
    query = {"q": "forward meters", "mode": "keyword", "stream_id": stream_id}
    hits = httpx.get(f"{keyed_server.url}/v1/search", params=query, headers=headers)
    assert stream_id in {h["stream_id"] for h in hits.json()["hits"]}


def test_errors_come_in_openais_shape(client: openai.OpenAI, keyed_server: KeyedServer) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(
            model="whisper-1", file=("notes.txt", b"not audio at all", "text/plain")
        )
    assert bad.value.code == "bad_audio" and "notes.txt" in bad.value.message
    assert "/tmp" not in bad.value.message and "voxindex-upload" not in bad.value.message  # no paths leak
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model="whisper-1", file=(FIXTURES / "goforward.wav").open("rb"), language="fr"
        )
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model="whisper-1",
            file=(FIXTURES / "goforward.wav").open("rb"),
            response_format="mp3",  # type: ignore[arg-type]
        )
    stranger = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key="vxk_bad_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.audio.transcriptions.create(model="whisper-1", file=(FIXTURES / "goforward.wav").open("rb"))


async def test_livekit_openai_stt_recognizes_through_voxindex(keyed_server: KeyedServer) -> None:
    audio = load_fixture("goforward.wav")
    pcm = (audio * 32767).astype(np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), 16000, 1, pcm.size)
    stt = lk_openai.STT(
        model="whisper-1", base_url=f"{keyed_server.url}/v1", api_key=keyed_server.api_key, use_realtime=False
    )
    event = await stt.recognize([frame])
    await stt.aclose()
    assert corpus_wer([(REFERENCE, event.alternatives[0].text)]) <= 0.1


def test_diarize_labels_verbose_json_segments_and_words(client: openai.OpenAI) -> None:
    """voxindex's ``diarize`` form field (sent by the real client as an extra field): segments and
    words of ``verbose_json`` carry the speaker of the turn they were said in; text names them."""
    from tests.conversations import attribution, conversation, speaker_of, voices

    audio, turns = conversation(voices(), ["librivox", "cards"], turns=6, seed=3)
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", wav_bytes(audio), "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        extra_body={"diarize": "true"},
    )
    words = [w.model_dump() for w in result.words or []]
    pairs = [(t, w["speaker"]) for w in words if (t := speaker_of(turns, w["start"], w["end"])) is not None]
    assert len(pairs) >= 40 and {label for _, label in pairs} == {0, 1}
    assert attribution(pairs) >= 0.9
    assert {s.model_dump()["speaker"] for s in result.segments or []} == {0, 1}
    text = client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", wav_bytes(audio), "audio/wav"),
        response_format="text",
        extra_body={"diarize": "true"},
    )
    assert all(line.startswith(("Speaker 0: ", "Speaker 1: ")) for line in str(text).strip().splitlines())

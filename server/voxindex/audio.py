"""Decoding files to 16 kHz mono float32, and PCM conversions for streams.

PyAV (FFmpeg) is imported where a file is decoded or a stream resampled, not with this module:
the engine needs only the constants and PCM conversions, and runs where PyAV is not installed
(the GPU benchmark's bare machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from voxindex.errors import AudioDecodeError

if TYPE_CHECKING:
    import av

SAMPLE_RATE = 16_000
# Decoded audio shorter than this share of the duration the header declares means a truncated file.
TRUNCATION_TOLERANCE = 0.98
Float32Array = npt.NDArray[np.float32]


def decode_file(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Float32Array:
    """Decode any audio (or video's audio track) that FFmpeg reads into mono float32 at ``sample_rate``.

    Raises AudioDecodeError with a plain message for a missing, empty, truncated or non-audio file.
    """
    import av

    p = Path(path)
    if not p.exists():
        raise AudioDecodeError(f"{p}: no such file")
    if p.is_dir():
        raise AudioDecodeError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: file is empty")
    check_wav_complete(p)
    try:
        samples = _decode(p, sample_rate)
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise AudioDecodeError(f"{p}: not a readable audio file ({e.__class__.__name__}: {e})") from e
    if samples.size == 0:
        raise AudioDecodeError(f"{p}: contains no audio samples")
    return samples


def _decode(path: Path, sample_rate: int) -> Float32Array:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        declared = _declared_seconds(container, stream)
        chunks = [_frames_to_array(resampler.resample(frame)) for frame in container.decode(stream)]
        chunks.append(_frames_to_array(resampler.resample(None)))
    samples = np.concatenate(chunks)
    decoded = samples.size / sample_rate
    if declared is not None and decoded < declared * TRUNCATION_TOLERANCE - 0.05:
        raise AudioDecodeError(
            f"{path}: truncated: the header declares {declared:.2f} s, only {decoded:.2f} s decode"
        )
    return samples


def check_wav_complete(path: Path) -> None:
    """FFmpeg silently decodes what is left of a cut WAV; compare the data chunk's declared size instead."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise AudioDecodeError(f"{path}: truncated WAV: no data chunk")
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                available = size - f.tell()
                # 0 and 0xFFFFFFFF mark a WAV written as a stream, with no size known up front.
                if chunk_size not in (0, 0xFFFFFFFF) and available < chunk_size:
                    raise AudioDecodeError(
                        f"{path}: truncated WAV: header declares {chunk_size} bytes of audio, "
                        f"file holds {available}"
                    )
                return
            f.seek(chunk_size + (chunk_size & 1), 1)


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def pcm16_to_float(data: bytes) -> Float32Array:
    """Little-endian signed 16-bit PCM to float32 in [-1, 1]. ``len(data)`` must be even."""
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def f32_to_float(data: bytes) -> Float32Array:
    """Little-endian float32 PCM, clipped to [-1, 1] and with NaN/inf zeroed."""
    x = np.frombuffer(data, dtype="<f4").astype(np.float32)
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


class StreamResampler:
    """Stateful resampler for a live stream: chunks in at ``from_rate``, chunks out at 16 kHz.

    Keeps the filter state between chunks so chunk boundaries add no clicks.
    """

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE) -> None:
        import av

        self.from_rate = from_rate
        self.to_rate = to_rate
        self._resampler = (
            None if from_rate == to_rate else av.AudioResampler(format="flt", layout="mono", rate=to_rate)
        )
        self._pts = 0

    def push(self, x: Float32Array) -> Float32Array:
        if self._resampler is None or x.size == 0:
            return x
        import av

        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.from_rate
        frame.pts = self._pts
        self._pts += x.size
        return _frames_to_array(self._resampler.resample(frame))

    def flush(self) -> Float32Array:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return _frames_to_array(self._resampler.resample(None))


def _frames_to_array(frames: list[av.AudioFrame]) -> Float32Array:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1).astype(np.float32, copy=False) for f in frames])


def _mulaw(code: int) -> int:
    u = ~code & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)
    return -(magnitude - 0x84) if u & 0x80 else magnitude - 0x84


def _alaw(code: int) -> int:
    a = code ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if a & 0x80 else -magnitude


# ITU-T G.711 (telephony): one byte per sample, decoded by table
_MULAW = np.array([_mulaw(c) for c in range(256)], np.float32) / 32768.0
_ALAW = np.array([_alaw(c) for c in range(256)], np.float32) / 32768.0


def mulaw_to_float(data: bytes) -> Float32Array:
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


def alaw_to_float(data: bytes) -> Float32Array:
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


# encoding → (bytes per sample, decoder)
PCM_ENCODINGS = {
    "pcm_s16le": (2, pcm16_to_float),
    "pcm_f32le": (4, f32_to_float),
    "pcm_mulaw": (1, mulaw_to_float),
    "pcm_alaw": (1, alaw_to_float),
}


class PcmDecoder:
    """Raw PCM bytes of a live stream → 16 kHz float32.

    Frames need not hold whole samples: a sample split across two frames is joined, as
    TCP-style chunking by clients and proxies requires. ``leftover`` counts bytes still
    waiting for the rest of their sample. Interleaved channels are mixed down to mono.
    """

    def __init__(self, encoding: str, sample_rate: int, channels: int = 1) -> None:
        sample_width, self._convert = PCM_ENCODINGS[encoding]
        self.channels = channels
        self.width = sample_width * channels  # bytes per frame of all channels
        self._carry = b""
        self._resampler = StreamResampler(sample_rate)

    @property
    def leftover(self) -> int:
        return len(self._carry)

    def push(self, data: bytes) -> Float32Array:
        data = self._carry + data
        whole = len(data) - len(data) % self.width
        self._carry = data[whole:]
        if not whole:
            return np.zeros(0, np.float32)
        samples = self._convert(data[:whole])
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return self._resampler.push(samples)

    def flush(self) -> Float32Array:
        return self._resampler.flush()

"""Reader for the CTranslate2 ``model.bin`` format, whole or split into ``model.bin.partN`` files.

Layout (little-endian): uint32 binary version, then (version >= 2) the spec name and an
uint32 spec revision, then uint32 variable count; each variable is a name, uint8 rank,
uint32 dims, uint8 dtype, uint32 byte count and the raw bytes; then uint32 alias count
and (alias, target) name pairs. Strings are uint16 length (with a trailing NUL) + bytes.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from voxindex.errors import CheckpointFormatError

# CTranslate2's DataType enum, in declaration order.
_DTYPES: dict[int, npt.DTypeLike] = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
    5: "bfloat16",
}
_SUPPORTED_VERSIONS = range(1, 7)


@dataclass
class Ct2Checkpoint:
    spec: str
    revision: int
    variables: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)

    def scalar(self, name: str) -> int:
        return int(self.variables[name].reshape(-1)[0])


def read_checkpoint(parts: list[Path]) -> Ct2Checkpoint:
    """Read a checkpoint from one file or from split parts concatenated in the given order."""
    if not parts:
        raise CheckpointFormatError("no checkpoint files given")
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise CheckpointFormatError(f"checkpoint part missing: {', '.join(missing)}")
    data = b"".join(p.read_bytes() for p in parts)
    try:
        return _parse(io.BytesIO(data))
    except (struct.error, UnicodeDecodeError, ValueError, KeyError) as e:
        names = ", ".join(p.name for p in parts)
        raise CheckpointFormatError(f"{names}: not a complete CTranslate2 checkpoint ({e})") from e


def _parse(f: BinaryIO) -> Ct2Checkpoint:
    version = _u32(f)
    if version not in _SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported binary version {version}")
    spec, revision = "", 1
    if version >= 2:
        spec = _string(f)
        revision = _u32(f)
    ckpt = Ct2Checkpoint(spec=spec, revision=revision)
    for _ in range(_u32(f)):
        name = _string(f)
        rank = _u8(f)
        shape = struct.unpack(f"<{rank}I", _exact(f, 4 * rank))
        dtype = _DTYPES[_u8(f)] if version >= 4 else np.float32
        nbytes = _u32(f)
        raw = _exact(f, nbytes)
        if dtype == "bfloat16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array: npt.NDArray[np.generic] = u16.view(np.float32).reshape(shape)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
        ckpt.variables[name] = array
    if version >= 3:
        for _ in range(_u32(f)):
            alias, target = _string(f), _string(f)
            ckpt.variables[alias] = ckpt.variables[target]
    return ckpt


def _exact(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ValueError(f"truncated: wanted {n} bytes, got {len(b)}")
    return b


def _u8(f: BinaryIO) -> int:
    return int(_exact(f, 1)[0])


def _u32(f: BinaryIO) -> int:
    return int(struct.unpack("<I", _exact(f, 4))[0])


def _string(f: BinaryIO) -> str:
    n = struct.unpack("<H", _exact(f, 2))[0]
    return _exact(f, n).rstrip(b"\0").decode("utf-8")

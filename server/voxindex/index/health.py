"""Whether this replica can store what it is sent: free space under the data directory and a
real write, for ``/readyz`` (a replica that cannot store a final must not get new streams),
the ``voxindex_store_free_bytes`` gauge, and uploads (refused before their body is stored)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from voxindex.errors import InvalidRequestError, StoreUnavailableError
from voxindex.index.sqlite import Store

GiB = 1 << 30
DEFAULT_RESERVE = (GiB, 5.0)  # 1 GiB or 5 % of the filesystem, whichever is smaller
PROBE_EVERY_S = 2.0  # probes and scrapes more often than this reuse the last answer
UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12}
UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": GiB, "tib": 1 << 40}


@dataclass(frozen=True)
class Reserve:
    """Free space kept for transcripts: a size, a share of the filesystem, or the smaller."""

    size: int | None
    share: float | None  # percent

    def of(self, total: int) -> int:
        limits = [v for v in (self.size, None if self.share is None else total * self.share / 100) if v]
        return int(min(limits)) if limits else 0


def parse_reserve(raw: str) -> Reserve:
    """``--store-min-free``: "" (the default), a size ("2GiB", "500MB", "1048576"), a share
    of the filesystem ("10%"), or both ("1GiB,5%": whichever is smaller)."""
    if not raw.strip():
        return Reserve(*DEFAULT_RESERVE)
    size: int | None = None
    share: float | None = None
    for part in raw.replace(" ", "").lower().split(","):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(%|[kmgt]?i?b?)", part)
        if m is None or (m.group(2) not in UNITS and m.group(2) != "%"):
            raise InvalidRequestError(
                f"--store-min-free must be a size like 1GiB or 500MB, a share like 5%, or both, got {raw!r}"
            )
        if m.group(2) == "%":
            share = float(m.group(1))
        else:
            size = int(float(m.group(1)) * UNITS[m.group(2)])
    return Reserve(size, share)


@dataclass(frozen=True)
class Space:
    free: int  # bytes an unprivileged writer may still use
    reserve: int  # below this much free, the store counts as full


class StoreHealth:
    """``check()``: "ok", "full" (free space below the reserve, or the store said so),
    "unwritable" (a probe write failed: read-only or failing disk) or "corrupt"."""

    def __init__(self, store: Store, reserve: str = "") -> None:
        self.store = store
        self.data_dir = store.path.parent  # the vector index lives beside the store
        self.reserve = parse_reserve(reserve)
        self._lock = threading.Lock()
        self._last: tuple[float, str] | None = None

    def space(self, directory: Path | None = None) -> Space:
        """Of the filesystem holding ``directory`` (default: the data directory)."""
        st = os.statvfs(directory or self.data_dir)
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        return Space(free, self.reserve.of(total))

    def free_bytes(self) -> float:
        return float(self.space().free)

    def reserve_bytes(self) -> float:
        return float(self.space().reserve)

    def check(self) -> str:
        """Blocks for a write and an fsync: call it off the event loop."""
        with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= PROBE_EVERY_S:
                self._last = (now, self._probe())
            return self._last[1]

    def room_for(self, size: int, directory: Path | None = None) -> None:
        """Raise StoreUnavailableError unless ``size`` bytes fit and leave the reserve free."""
        space = self.space(directory)
        if space.free - size < space.reserve:
            raise StoreUnavailableError(
                f"not enough space under the data directory for {size} bytes: {space.free} free, "
                f"{space.reserve} kept for transcripts"
            )

    def _probe(self) -> str:
        try:
            self.store.probe()
        except StoreUnavailableError:
            return self.store.fault or "unwritable"
        if self.store.fault == "corrupt":
            return "corrupt"
        if not _file_writable(self.data_dir):
            return "unwritable"
        space = self.space()
        return "full" if space.free < space.reserve else "ok"


def _file_writable(directory: Path) -> bool:
    """Create, write, fsync and remove a small file (what saving the vector index does)."""
    path = directory / f".probe-{uuid.uuid4().hex}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"voxindex")
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

"""``--store``: which transcript index a server opens."""

from __future__ import annotations

from pathlib import Path

from voxindex.config import Settings
from voxindex.errors import InvalidRequestError
from voxindex.index.base import TranscriptIndex
from voxindex.index.sqlite import STORE_FILE, Store


def local_dir(settings: Settings) -> Path:
    """Where this replica's SQLite store (and, embedded, its vector index) lives: the data dir,
    or the path of ``sqlite:///path``."""
    url = settings.store.strip()
    path = url.removeprefix("sqlite://") if url.startswith("sqlite://") else ""
    return Path(path) if path else settings.data_dir


def check_store(settings: Settings) -> None:
    """Before the server listens: the local store opens (created if missing), or the server
    refuses to start with StoreCorruptError / StoreUnavailableError naming the file."""
    if settings.index:
        Store(local_dir(settings) / STORE_FILE).close()


def open_index(settings: Settings, device: str = "cpu") -> TranscriptIndex:
    """``sqlite://`` (the data dir) or ``sqlite:///path``: embedded SQLite + FAISS.
    ``milvus://host:port/collection``: shared by replicas; local state stays in the data dir.
    ``device``: where the engine runs; on "cuda" embeddings (and FAISS search) use the GPU."""
    url = settings.store.strip()
    if url.startswith("sqlite://"):
        from voxindex.index.live import LiveIndex

        return LiveIndex.open(local_dir(settings), settings.ivf_threshold, device)
    if url.startswith("milvus://"):
        from voxindex.index.milvus import MilvusIndex

        return MilvusIndex.open(
            url,
            settings.data_dir,
            settings.replica_id,
            limit=settings.store_buffer_max,
            timeout_s=settings.store_timeout_s,
            device=device,
        )
    raise InvalidRequestError(
        f"--store must be sqlite://[/path] or milvus://host:port/collection, got {url!r}"
    )

"""Milvus addresses, keys and filter expressions, and the fields the index reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from voxindex.errors import InvalidRequestError
from voxindex.index.records import Filters

QUERY_LIMIT = 16_384  # Milvus's largest query window


STATS_TTL_S = 5.0


@dataclass(frozen=True)
class MilvusUrl:
    uri: str  # http://host:port
    collection: str
    token: str | None

    @classmethod
    def parse(cls, url: str) -> MilvusUrl:
        """``milvus://host:port/collection[?token=user:password]``."""
        parts = urlparse(url)
        collection = parts.path.strip("/") or "voxindex"
        if parts.scheme != "milvus" or not parts.hostname:
            raise InvalidRequestError(f"store URL must look like milvus://host:19530/collection, got {url!r}")
        if not collection.replace("_", "").isalnum() or not collection[0].isalpha():
            raise InvalidRequestError(f"collection name {collection!r}: letters, digits and _ only")
        token = parse_qs(parts.query).get("token", [None])[0]
        return cls(f"http://{parts.hostname}:{parts.port or 19530}", collection, token)


def segment_key(stream_id: str, segment_index: int) -> int:
    """A segment's primary key in Milvus, the same on every replica and every retry (idempotent
    upserts): 63 bits of a hash of stream id and index. Stream ids are unique across replicas."""
    digest = hashlib.blake2b(f"{stream_id}/{segment_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def literal(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(value)


def expression(filters: Filters) -> str:
    terms = ['stream_id != ""']
    if filters.tenant is not None:
        terms.append(f"tenant == {literal(filters.tenant)}")
    if filters.stream_id is not None:
        terms.append(f"stream_id == {literal(filters.stream_id)}")
    if filters.since is not None:
        terms.append(f"created >= {float(filters.since)!r}")
    if filters.until is not None:
        terms.append(f"created < {float(filters.until)!r}")
    if filters.speaker is not None:
        terms.append(f"speaker == {int(filters.speaker)}")
    return " and ".join(terms)


SEGMENT_FIELDS = [
    "id",
    "stream_id",
    "tenant",
    "segment_index",
    "start",
    "end",
    "text",
    "words",
    "language",
    "model",
    "created",
    "recording",
    "speaker",
]


STREAM_FIELDS = ["stream_id", "tenant", "model", "created", "closed", "metadata"]

"""API keys for server-to-server callers. Only a salted hash of each key is stored.

A key reads ``vxk_<id>_<secret>``: the id finds the row, the secret is checked against
HMAC-SHA256(salt, secret) in constant time. Keys are 256-bit random, so a fast hash is safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voxindex.errors import StoreUnavailableError

KEY_PREFIX = "vxk_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
"""


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    scopes: list[str]
    created: float
    revoked: float | None


class ApiKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailableError(f"cannot open the API key store {path}: {e}") from e

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The database, under the lock; its failures are StoreUnavailableError with the path."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as e:
                raise StoreUnavailableError(f"the API key store {self.path} failed: {e}") from e

    def create(self, tenant: str, scopes: list[str]) -> tuple[ApiKey, str]:
        """Create a key; the plain key is returned once and never stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        now = time.time()
        with self._using() as db:
            db.execute(
                "INSERT INTO api_keys(id, tenant, scopes, salt, hash, created) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, tenant, " ".join(scopes), salt, _digest(salt, secret), now),
            )
        return ApiKey(key_id, tenant, scopes, now, None), f"{KEY_PREFIX}{key_id}_{secret}"

    def verify(self, key: str) -> ApiKey | None:
        body = key[len(KEY_PREFIX) :]
        key_id, _, secret = body.partition("_")
        with self._using() as db:
            row = db.execute(
                "SELECT id, tenant, scopes, salt, hash, created, revoked FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        if row is None or row[6] is not None or not hmac.compare_digest(row[4], _digest(row[3], secret)):
            return None
        return ApiKey(row[0], row[1], row[2].split(), row[5], row[6])

    def revoke(self, key_id: str) -> bool:
        with self._using() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id)
            )
        return cur.rowcount > 0

    def list(self) -> list[ApiKey]:
        with self._using() as db:
            rows = db.execute(
                "SELECT id, tenant, scopes, created, revoked FROM api_keys ORDER BY created"
            ).fetchall()
        return [ApiKey(r[0], r[1], r[2].split(), r[3], r[4]) for r in rows]


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()

"""The embedded transcript store (SQLite, WAL): one table module per concept behind ``Store``."""

from voxindex.index.sqlite.connection import STORE_FILE, fault_kind
from voxindex.index.sqlite.store import Store

__all__ = ["STORE_FILE", "Store", "fault_kind"]

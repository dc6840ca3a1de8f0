"""Async Python client for voxindex (docs/protocol.md)."""

from voxindex_client.events import (
    Closed,
    Error,
    Event,
    Final,
    Interim,
    Ready,
    Reconnected,
    SpeechEnded,
    SpeechStarted,
    Word,
)
from voxindex_client.session import Session, VoxindexError, connect

__all__ = [
    "Closed",
    "Error",
    "Event",
    "Final",
    "Interim",
    "Ready",
    "Reconnected",
    "Session",
    "SpeechEnded",
    "SpeechStarted",
    "VoxindexError",
    "Word",
    "connect",
]

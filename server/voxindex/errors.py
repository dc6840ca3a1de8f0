"""The error hierarchy every edge maps to a documented code (docs/errors.md).

Each error carries a stable machine-readable ``code`` and a ``retryable`` flag,
so the CLI, the WebSocket adapters and the REST routes can answer the same
failure the same way without ever showing a traceback.
"""

from __future__ import annotations


class VoxError(Exception):
    """Base class: a failure with a documented code and a human message."""

    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AudioDecodeError(VoxError):
    """The input is missing, empty, truncated or not audio."""

    code = "bad_audio"


class ModelNotFoundError(VoxError):
    """The requested model id resolves to nothing loadable offline."""

    code = "unknown_model"


class CheckpointFormatError(VoxError):
    """A checkpoint file exists but is not a format we can read."""

    code = "bad_checkpoint"


class InvalidRequestError(VoxError):
    """A parameter or control message failed validation."""

    code = "invalid_request"


class CapacityError(VoxError):
    """The engine is full; try again later."""

    code = "over_capacity"
    retryable = True


class QuotaError(VoxError):
    """A tenant's quota (concurrent streams, stream duration) is used up."""

    code = "quota_exceeded"
    retryable = True


class NotReadyError(CapacityError):
    """The server is still starting (model loading or warming up)."""

    code = "not_ready"


class StoreUnavailableError(CapacityError):
    """The transcript store cannot take or give data now: the local disk is full, read-only or
    failing; the shared store (Milvus) is unreachable, or too much waits for it."""

    code = "store_unavailable"
    retryable = True


class StoreCorruptError(VoxError):
    """At start-up: the transcript store's file is damaged, truncated or not a database."""

    code = "store_corrupt"


class SpeakersUnavailableError(InvalidRequestError):
    """Speaker labels were asked for but the speaker encoder's weights are not installed."""

    code = "speakers_unavailable"


class UnsupportedLanguageError(InvalidRequestError):
    """A language the model does not read, or translation asked of an English-only model."""

    code = "unsupported_language"

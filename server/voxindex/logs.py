"""Logging: one line per event, JSON in production, never audio or credentials.

``setup_logging`` sends every logger (ours, uvicorn's error and access logs) through one
handler. Each record carries the stream and tenant it concerns: the API sets them for the
handler's task with ``log_context``; the engine thread passes them as ``extra``. A filter
strips credentials from every message, because uvicorn logs a WebSocket's full path and a
browser's token travels as ``?access_token=``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_stream_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stream_id", default=None)
_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)

CONTEXT_FIELDS = ("stream_id", "tenant", "client", "code", "recording_id")
_SECRET = re.compile(
    r"(?i)((?:access_token|token|api_key|apikey|key|secret|password)=)[^&\s\"']+"
    r"|((?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # a bare JWT
    r"|\bvxk_[A-Za-z0-9_-]{16,}"  # a bare API key
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""

    def sub(m: re.Match[str]) -> str:
        return (m.group(1) or m.group(2) or "") + "[redacted]"

    return _SECRET.sub(sub, text)


@contextmanager
def log_context(stream_id: str | None = None, tenant: str | None = None) -> Iterator[None]:
    """Tag every record logged in this (asyncio) context with the stream and tenant."""
    tokens = (_stream_id.set(stream_id), _tenant.set(tenant))
    try:
        yield
    finally:
        _stream_id.reset(tokens[0])
        _tenant.reset(tokens[1])


class ContextFilter(logging.Filter):
    """Adds the context's stream/tenant ids and removes credentials from the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "stream_id", None) is None:
            record.stream_id = _stream_id.get()
        if getattr(record, "tenant", None) is None:
            record.tenant = _tenant.get()
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        names = ("stream_id", "tenant")
        ids = " ".join(f"{n}={getattr(record, n)}" for n in names if getattr(record, n, None))
        return f"{line} [{ids}]" if ids else line


# libraries whose info lines read like failures ("Could not load library with AVX512 support"
# is faiss choosing its build) or say what our own lines say: their warnings only
QUIET = ("faiss.loader", "httpx", "httpcore", "sentence_transformers")


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on ``sys.stderr`` as it is when a record is emitted, not when logging was set
    up: a thread that logs after a test harness (or anything else) swapped stderr and closed the
    old one must not print "--- Logging error ---" instead of its line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Route the root logger and uvicorn's loggers through one handler on stderr."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)  # library warnings become records too (one format on stderr)
    # no progress bars: models load from local packages, and a bar is not a log line
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

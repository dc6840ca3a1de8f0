"""What a running server holds (``Services``) and how far start-up has got (``Boot``).

Routes reach them through ``running()``, which answers ``not_ready`` (HTTP 503, WebSocket
1013) until the model is loaded and warmed up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from voxindex.errors import NotReadyError

if TYPE_CHECKING:
    from voxindex.api.auth import Authenticator
    from voxindex.api.limits import ConnectLimits
    from voxindex.config import Settings
    from voxindex.device import DeviceProbe
    from voxindex.engine.scheduler import Scheduler
    from voxindex.index.base import TranscriptIndex
    from voxindex.index.health import StoreHealth
    from voxindex.index.stream_audio import StreamAudio
    from voxindex.metrics import Metrics
    from voxindex.models.whisper import WhisperModel
    from voxindex.offline import OfflineService
    from voxindex.recordings import RecordingService


@dataclass
class Boot:
    """Start-up progress, which /readyz reports: the server listens (and answers probes) while
    the model loads and warms up, so a slow load never looks like a dead process."""

    model: str = "loading"  # loading | ok
    index: str = "opening"  # opening | ok | disabled
    warm: str = "pending"  # pending | ok
    failed: str | None = None  # start-up failed: /healthz turns 503 and the process should restart


@dataclass
class Services:
    settings: Settings
    model: WhisperModel
    scheduler: Scheduler
    index: TranscriptIndex | None
    auth: Authenticator
    connects: ConnectLimits
    offline: OfflineService
    recordings: RecordingService | None
    draining: asyncio.Event  # set on graceful shutdown: streams finish, new ones are refused
    metrics: Metrics
    device: DeviceProbe  # what serves: /readyz and /metrics report it
    store: StoreHealth | None = None  # can this replica store what it is sent (None: --no-index)
    audio: StreamAudio | None = None  # record=true streams' audio (None: --no-index)


def running(app: Starlette) -> Services:
    """The running server's services, or NotReadyError while it starts."""
    services: Services | None = app.state.services
    if services is None:
        raise NotReadyError("the server is starting (loading and warming up the model); retry shortly")
    return services

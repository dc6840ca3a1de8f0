"""Starting and stopping a server: the services wired at start-up (model, index, engine,
recordings, credentials), uvicorn, and a shutdown that lets streams finish."""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI

from voxindex import __version__
from voxindex.api.app import build_app
from voxindex.api.auth import build_authenticator, check_secure
from voxindex.api.limits import ConnectLimits
from voxindex.api.services import Boot, Services
from voxindex.audio import Float32Array, decode_file
from voxindex.config import Settings
from voxindex.device import DeviceProbe
from voxindex.engine.recordings import Recordings
from voxindex.engine.scheduler import Scheduler
from voxindex.engine.speakers.labeller import load_speakers
from voxindex.index.backends import check_store, open_index
from voxindex.index.health import StoreHealth, parse_reserve
from voxindex.index.stream_audio import StreamAudio
from voxindex.loading import load_model
from voxindex.metrics import Metrics
from voxindex.models.registry import resolve
from voxindex.models.whisper import WhisperModel
from voxindex.offline import OfflineService
from voxindex.recordings import RecordingService

log = logging.getLogger("voxindex.serve")


def create_app(settings: Settings, model: WhisperModel | None = None) -> FastAPI:
    """The app. ``model`` lets tests share one loaded model; otherwise it loads at start-up.

    The app listens at once; the model loads and warms up in a worker thread, and until it is
    ready /readyz answers 503 and streams are refused with ``not_ready`` (1013 / HTTP 503).
    """

    def start(boot: Boot, metrics: Metrics, draining: asyncio.Event) -> Services:
        return start_services(settings, model, boot, metrics, draining)

    return build_app(settings, start)


def start_services(
    settings: Settings, model: WhisperModel | None, boot: Boot, metrics: Metrics, draining: asyncio.Event
) -> Services:
    """Load the model, open the index, warm the model up and start the engine (a worker thread:
    the server already answers probes meanwhile)."""
    loaded = model or load_model(settings.model, settings.device, settings.cache_dir, settings.compute_type)
    boot.model = "ok"
    index = open_index(settings, loaded.device.type) if settings.index else None
    boot.index = "ok" if index is not None else "disabled"
    speakers = load_speakers(loaded.device)
    background = Recordings(index, loaded.name) if index is not None else None
    scheduler = Scheduler(loaded, settings, index, background, metrics, speakers)
    if settings.warmup:
        t = time.perf_counter()
        reading = scheduler.warm_up(warmup_audio(), batch=4)
        took = time.perf_counter() - t
        metrics.warmup_seconds.set(took)
        if not reading.text.strip():
            log.warning("warm-up heard nothing in the sample speech: is the model %s sound?", loaded.name)
        log.info("warm-up took %.2f s", took)
    scheduler.start()
    store = StoreHealth(index.catalog, settings.store_min_free) if index else None
    recordings = (
        RecordingService(settings, loaded.name, index, background, store, speakers, loaded.languages)
        if index and background
        else None
    )
    auth, connects = build_authenticator(settings), ConnectLimits.from_settings(settings)
    offline = OfflineService(loaded, index, speakers)
    device = DeviceProbe(loaded.device)
    audio = StreamAudio(settings.data_dir / "audio", settings.record_retention_s) if index else None
    if audio is not None:
        audio.start()  # the retention sweeper
    services = Services(
        settings,
        loaded,
        scheduler,
        index,
        auth,
        connects,
        offline,
        recordings,
        draining,
        metrics,
        device,
        store,
        audio,
    )
    watch(services)
    boot.warm = "ok"
    log.info("voxindex %s serving %s on %s", __version__, loaded.name, loaded.device)
    return services


def warmup_audio() -> Float32Array:
    """Real speech shipped with the package: warm-up runs every stage (VAD, decode, alignment)."""
    return decode_file(Path(str(resources.files("voxindex.samples") / "goforward.wav")))


def watch(s: Services) -> None:
    """The gauges read from live state at each scrape."""
    m = s.metrics
    m.build.info({"version": __version__, "model": s.model.name, "device": str(s.model.device)})
    m.watch(m.active_streams, lambda: len(s.scheduler.streams))
    m.watch(m.engine_lag, lambda: s.scheduler.lag)
    m.watch(m.draining, lambda: float(s.draining.is_set()))
    if s.index is not None:
        index = s.index
        m.watch(m.recordings_pending, lambda: len(index.catalog.unfinished_recordings()))
        m.watch_index(index.stats)
    if s.store is not None:
        m.watch(m.store_free_bytes, s.store.free_bytes)
        m.watch(m.store_reserve_bytes, s.store.reserve_bytes)
    m.device_info.labels(s.device.device.type, s.device.name).set(1)
    if s.model.device.type == "cuda":
        device = s.model.device
        m.watch_gpu(lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device))
        m.watch_gpu_card(s.device.memory, s.device.utilization)


def wait_ready(app: FastAPI, timeout: float = 300.0) -> None:
    """Block until an app served in this process has started (tests, `voxindex bench`)."""
    deadline = time.monotonic() + timeout
    while getattr(app.state, "services", None) is None:
        boot: Boot = app.state.boot
        if boot.failed is not None:
            raise RuntimeError(f"server start-up failed: {boot.failed}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after {timeout:.0f} s: {boot}")
        time.sleep(0.05)


def serve(settings: Settings) -> None:
    import uvicorn

    settings = check_secure(settings)
    resolve(settings.model)  # an unknown model fails now, with its message, not after start-up
    parse_reserve(settings.store_min_free)
    check_store(settings)  # a damaged or unreadable store: refuse to start, naming the file
    app = create_app(settings)
    DrainingServer(uvicorn.Config(app, **uvicorn_options(settings)), app, settings.shutdown_grace_s).run()


class DrainingServer:
    """uvicorn, with a graceful shutdown that lets streams finish.

    On SIGTERM uvicorn would close every WebSocket with 1012 at once; first, every stream is
    finalized instead (its clients get their last finals and `closed`, then 1012, so they
    reconnect elsewhere), new streams are refused, and only then does uvicorn shut down. A
    second SIGTERM, or the grace period running out, cuts the wait short; finals are committed
    to the store before they are sent, so nothing committed is lost either way.
    """

    def __init__(self, config: Any, app: FastAPI, grace_s: float) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                """SIGTERM/SIGINT: shut down gracefully, then exit 0; a second one: stop waiting."""
                if self.should_exit:
                    self.force_exit = True
                    app.state.stop_deadline = time.monotonic()  # the engine stops after this step
                self.should_exit = True

            async def shutdown(self, sockets: Any = None) -> None:
                deadline = time.monotonic() + grace_s
                if getattr(app.state, "stop_deadline", None) is None:
                    app.state.stop_deadline = deadline
                services: Services | None = app.state.services
                if services is not None:
                    services.draining.set()
                    while services.scheduler.streams and not self.force_exit and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.3)  # the handlers send `closed` and their 1012
                await super().shutdown(sockets)

        self.server = Server(config)

    def run(self) -> None:
        self.server.run()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app. WebSocket messages up to 4x the frame limit reach the handler,
    which answers 4413 with an explanation; larger ones are cut off by the protocol layer (1009)
    before they are buffered."""
    return {
        "host": settings.host,
        "port": settings.port,
        "ws": "websockets-sansio",
        "ws_max_size": 4 * max(settings.max_frame_bytes, settings.max_control_bytes),
        "log_level": settings.log_level.lower(),
        "log_config": None,  # logging is set up once, by voxindex.logs (JSON or text, redacted)
        "proxy_headers": True,  # the client's address from X-Forwarded-For, only from trusted proxies
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_s),
    }

"""Probes and facts: liveness, readiness, Prometheus metrics, a human-readable status, the model.

None of them is rate limited (``app.py`` exempts ``PROBES``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from voxindex.api.services import Boot, Services, running
from voxindex.engine.scheduler import ADMISSION_MAX_LAG_S

LIVENESS_STALL_S = 120.0  # an engine loop that has not turned for this long is stuck: restart

router = APIRouter()


def is_ready(checks: dict[str, str]) -> bool:
    return all(v in ("ok", "disabled") for v in checks.values())


def readiness(app: FastAPI) -> dict[str, str]:
    """Each check /readyz makes; all "ok" means this replica should get new streams. The store
    check writes (``StoreHealth.check``): call this off the event loop."""
    boot: Boot = app.state.boot
    checks = {"model": boot.model, "index": boot.index, "warm": boot.warm}
    if boot.failed is not None:
        checks["start"] = "failed"
    s: Services | None = app.state.services
    if s is not None:
        checks["engine"] = "ok" if s.scheduler.alive else "stopped"
        full = len(s.scheduler.streams) >= s.settings.max_streams or s.scheduler.lag > ADMISSION_MAX_LAG_S
        checks["capacity"] = "full" if full else "ok"
        if s.store is not None:
            checks["store"] = s.store.check()
        if s.draining.is_set():
            checks["draining"] = "yes"
    return checks


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process serves requests and its engine loop turns. Restart if 503."""
    boot: Boot = request.app.state.boot
    s: Services | None = request.app.state.services
    problem = None
    if boot.failed is not None:
        problem = f"start-up failed: {boot.failed}"
    elif s is not None and not s.draining.is_set():
        if not s.scheduler.alive:
            problem = "the engine loop has stopped"
        elif time.monotonic() - s.scheduler.heartbeat > LIVENESS_STALL_S:
            problem = f"the engine loop has not turned for {LIVENESS_STALL_S:.0f} s"
    if problem is not None:
        return JSONResponse({"status": "failing", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: model loaded and warmed, index open, engine running, capacity left, not
    draining. 503 takes this replica out of the load balancer without restarting it."""
    checks = await asyncio.to_thread(readiness, request.app)
    ready = is_ready(checks)
    body: dict[str, object] = {"status": "ready" if ready else "unready", "checks": checks}
    s: Services | None = request.app.state.services
    if s is not None:
        body["device"] = await asyncio.to_thread(s.device.facts)  # NVML calls block briefly
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition (docs/operations.md)."""
    body = await asyncio.to_thread(request.app.state.metrics.render)  # readiness probes the store
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Human-readable status (model, streams, index); 503 ``not_ready`` while starting."""
    s = running(request.app)
    body: dict[str, Any] = {
        "status": "ok",
        "model": s.model.name,
        "device": str(s.model.device),
        "streams": len(s.scheduler.streams),
        "lag_s": round(s.scheduler.lag, 3),
    }
    if s.index is not None:
        stats = s.index.stats()
        body["index"] = {"segments": stats.segments, "vectors": stats.vectors, "kind": stats.kind}
    return body


PROBES = (health, healthz, readyz, metrics)


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    s = running(request.app)
    return {"data": [{"id": s.model.name, "multilingual": s.model.multilingual}]}

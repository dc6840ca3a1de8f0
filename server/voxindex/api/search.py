"""``GET /v1/search``: what was said, over the live index. Every bad input is a 400 with a message."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from voxindex.api.http import ApiError, caller, index_of
from voxindex.api.services import running
from voxindex.index.records import Filters
from voxindex.index.relevance import DEFAULT_MIN_SCORE
from voxindex.index.search import Mode

MAX_QUERY_CHARS = 1000
MAX_K = 100

router = APIRouter()


def parse_time(raw: str | None, name: str) -> float | None:
    """Unix seconds or ISO 8601 (naive times are UTC)."""
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "invalid_request", f"{name} must be unix seconds or ISO 8601, got {raw[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@router.get("/v1/search")
def search(
    request: Request,
    q: str = Query("", description="what to look for: words, a name, a number, or a paraphrase"),
    k: int = Query(10, description=f"number of hits, 1..{MAX_K}"),
    mode: str = Query("hybrid", description="hybrid | vector | keyword"),
    stream_id: str | None = Query(None),
    since: str | None = Query(None, description="unix seconds or ISO 8601; segments finalized at or after"),
    until: str | None = Query(None, description="unix seconds or ISO 8601; segments finalized before"),
    speaker: int | None = Query(None, description="only diarized segments mostly said by this label"),
    min_score: float = Query(
        DEFAULT_MIN_SCORE, description="the least relevance (0..1) a hit needs; 0 returns every candidate"
    ),
) -> dict[str, Any]:
    """Search every final segment of the caller's tenant: among segments that say the query's
    words (keyword), mean the same (vector) or either (hybrid); each hit's ``score`` is how sure
    search is that it says what was asked (0..1, index/relevance.py), and hits under
    ``min_score`` are left out, so a query for something never said finds nothing. Needs the
    `search` scope; `admin` searches every tenant."""
    principal = caller(request, "search")
    if not q.strip():
        raise ApiError(400, "invalid_request", "q must not be empty")
    if len(q) > MAX_QUERY_CHARS:
        raise ApiError(400, "invalid_request", f"q is {len(q)} characters; the limit is {MAX_QUERY_CHARS}")
    if not 1 <= k <= MAX_K:
        raise ApiError(400, "invalid_request", f"k must be 1..{MAX_K}, got {k}")
    try:
        search_mode = Mode(mode)
    except ValueError:
        raise ApiError(
            400, "invalid_request", f"mode must be hybrid, vector or keyword, got {mode[:20]!r}"
        ) from None
    if not 0.0 <= min_score <= 1.0:
        raise ApiError(400, "invalid_request", f"min_score must be 0..1, got {min_score}")
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start is not None and end is not None and start >= end:
        raise ApiError(400, "invalid_request", "since must be before until")
    if speaker is not None and not 0 <= speaker < 1000:
        raise ApiError(400, "invalid_request", f"speaker must be a label 0..999, got {speaker}")
    filters = Filters(principal.tenant_filter(), stream_id, start, end, speaker)
    index = index_of(request)
    started = time.perf_counter()
    hits = index.search(q, k, search_mode, filters, min_score)
    elapsed = time.perf_counter() - started
    running(request.app).metrics.search_seconds.labels(search_mode.value).observe(elapsed)
    hits_json = [h.to_json() for h in hits]
    return {"query": q, "mode": search_mode.value, "min_score": min_score, "hits": hits_json}

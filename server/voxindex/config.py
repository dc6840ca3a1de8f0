"""One typed settings object; the only place that reads ``VOXINDEX_*`` env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "tiny.en"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voxindex"


@dataclass(frozen=True)
class Settings:
    """Server and engine settings. CLI flags override env, env overrides defaults."""

    host: str = "127.0.0.1"
    port: int = 8080
    model: str = DEFAULT_MODEL
    device: str = "auto"
    compute_type: str = "auto"
    cache_dir: Path = field(default_factory=_default_cache_dir)
    max_streams: int = 32
    max_batch: int = 16
    batching: bool = True
    step_audio_s: float = 1.0
    step_budget_s: float = 0.6
    max_queue_s: float = 30.0
    threads: int = 0
    # torch threads for a final's (a turn's pause's) encoder pass while nothing else is in flight,
    # on a CPU with cores the server leaves idle; 1: off (on 2 cores it made the median final
    # sooner and the p95 later: BENCHMARKS.md "Turn-taking", benchmarks/pause_readings.py)
    lone_threads: int = 1
    turn_evidence: str = "fused"  # fused | acoustic | silence: what ends a turn (benchmarks/turns.py)
    log_level: str = "info"
    log_format: str = "text"  # text | json (one JSON object per line, for log shippers)
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For is trusted ("*": any)
    warmup: bool = True  # run the model once before /readyz turns ready
    data_dir: Path = Path("data")
    index: bool = True
    ivf_threshold: int = 200_000
    store: str = "sqlite://"  # sqlite:// (data_dir) | sqlite:///path | milvus://host:19530/collection
    replica_id: str = ""  # prefixes stream ids (e.g. the pod name): which replica served a stream
    store_buffer_max: int = 100_000  # writes waiting for an unreachable shared store before refusing
    store_timeout_s: float = 5.0  # one call to the shared store
    store_min_free: str = ""  # below this free space /readyz says "full": "2GiB", "10%"; "" = 1GiB or 5%
    no_auth: bool = False
    dev: bool = False
    jwt_secret: str | None = None
    jwt_secret_file: Path | None = None
    jwt_public_key: Path | None = None
    jwks_file: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    web_dir: Path | None = None  # the browser app served at /; default: the repository's clients/web
    import_dir: Path | None = None  # POST /v1/recordings {"url": "file:///..."} reads only inside it
    token: str | None = None  # the credential `voxindex search` sends (VOXINDEX_TOKEN)
    # limits (docs/limits.md); a rate is "N/second|minute|hour" or "N per K seconds", "" disables it
    idle_timeout_s: float = 60.0  # no audio or keepalive: close 4408
    max_frame_bytes: int = 65_536  # one binary audio frame: close 4413
    max_control_bytes: int = 4_096  # one JSON text message: close 4413
    max_audio_speed: float = 3.0  # x real time, after a burst of max_queue_s: faster clients are slowed
    max_stream_s: float = 4 * 3600.0  # audio or wall-clock time of one stream: close 4429
    max_streams_per_tenant: int = 16  # concurrent streams of one tenant: close 4429
    ws_connects_per_ip: str = "120/minute"  # WebSocket handshakes: close 4429
    ws_connects_per_tenant: str = "120/minute"
    rest_rate_per_ip: str = "600/minute"  # REST requests: HTTP 429
    rest_rate_per_tenant: str = "600/minute"
    rate_limit_storage: str = "memory://"  # or redis://host:6379 to share counters across replicas
    allowed_origins: str = ""  # comma-separated browser Origins for WebSockets; "" allows any
    max_body_bytes: int = 512 * 1024 * 1024  # request bodies (uploads): HTTP 413
    record_retention_s: float = 30 * 86400.0  # record=true audio is deleted this long after its stream
    shutdown_grace_s: float = 30.0  # SIGTERM: streams are finalized (finals sent, close 1012) within this

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``VOXINDEX_<FIELD>`` env vars, then apply non-None overrides."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f"VOXINDEX_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f.name)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _parse(kind: Any, raw: str, name: str) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    kind_name = kind_name.removesuffix(" | None")
    try:
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        if kind_name == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind_name == "Path":
            return Path(raw)
    except ValueError as e:
        raise ValueError(f"VOXINDEX_{name.upper()}={raw!r} is not a valid {kind_name}") from e
    return raw

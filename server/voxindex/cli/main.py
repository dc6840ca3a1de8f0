"""The ``voxindex`` command: serve | transcribe | bench.

Every failure the user can cause ends with one ``error: <code>: <message>`` line on
stderr and a non-zero exit status (2 for bad input, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from voxindex import __version__
from voxindex.config import Settings
from voxindex.errors import AudioDecodeError, VoxError
from voxindex.logs import setup_logging

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxindex", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"voxindex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="tiny.en (default), base, small, a model directory or a HF id")
        p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
        p.add_argument(
            "--compute-type",
            dest="compute_type",
            help="auto (default: float16 on CUDA; on a CPU the fastest of bfloat16 (encoder, with "
            "AMX), int8 and float32 that measures as accurate as float32 on this processor), "
            "float32, float16, int8, bfloat16",
        )

    t = sub.add_parser("transcribe", help="transcribe audio or video files offline")
    t.add_argument("files", nargs="+", type=Path)
    t.add_argument("--json", action="store_true", help="print one JSON object per file")
    t.add_argument("--words", action="store_true", help="include word timings and confidences")
    t.add_argument("--language", help="language code for multilingual models, or auto (default)")
    model_args(t)

    s = sub.add_parser("serve", help="run the streaming server")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--max-streams", type=int, dest="max_streams")
    s.add_argument("--max-batch", type=int, dest="max_batch")
    s.add_argument("--no-batching", action="store_false", dest="batching", default=None)
    s.add_argument(
        "--data-dir", type=Path, dest="data_dir", help="transcript store and index (default ./data)"
    )
    s.add_argument("--no-index", action="store_false", dest="index", default=None)
    s.add_argument(
        "--store",
        help="sqlite:// (default: the data dir), sqlite:///path, or milvus://host:19530/collection (shared)",
    )
    s.add_argument("--replica-id", dest="replica_id", help="this replica's name, prefixed to stream ids")
    s.add_argument(
        "--store-min-free",
        dest="store_min_free",
        help="free space under the data dir below which /readyz says full: 2GiB, 10%% (default 1GiB or 5%%)",
    )
    s.add_argument("--no-auth", action="store_true", dest="no_auth", default=None, help="loopback only")
    s.add_argument(
        "--log-format", dest="log_format", choices=["text", "json"], help="json: one object per line"
    )
    s.add_argument(
        "--forwarded-allow-ips",
        dest="forwarded_allow_ips",
        help="proxies trusted for X-Forwarded-For (comma-separated, or *); default 127.0.0.1",
    )
    s.add_argument(
        "--shutdown-grace-s", type=float, dest="shutdown_grace_s", help="SIGTERM: seconds to finish streams"
    )
    s.add_argument("--import-dir", type=Path, dest="import_dir", help="recordings may be imported from here")
    s.add_argument(
        "--record-retention",
        dest="record_retention_s",
        type=_retention,
        help="keep record=true streams' audio this long after they end: 90s, 12h, 30d (default 30d)",
    )
    s.add_argument("--dev", action="store_true", default=None, help="generate a dev secret, print a token")
    s.add_argument("--jwt-secret-file", type=Path, dest="jwt_secret_file", help="HS256 shared secret")
    s.add_argument("--jwt-public-key", type=Path, dest="jwt_public_key", help="RS256/ES256 public key (PEM)")
    s.add_argument("--jwks-file", type=Path, dest="jwks_file", help="local JWKS; keys chosen by kid")
    s.add_argument("--jwt-audience", dest="jwt_audience")
    s.add_argument("--jwt-issuer", dest="jwt_issuer")
    model_args(s)

    tk = sub.add_parser("token", help="mint an HS256 development token with the configured secret")
    tk.add_argument("--sub", required=True)
    tk.add_argument("--tenant")
    tk.add_argument("--scope", default="transcribe,search", help="comma-separated: transcribe,search,admin")
    tk.add_argument("--ttl", default="1h", help="e.g. 30m, 1h, 7d")
    tk.add_argument("--jwt-secret-file", type=Path, dest="jwt_secret_file")
    tk.add_argument("--data-dir", type=Path, dest="data_dir")

    ks = sub.add_parser("keys", help="manage API keys")
    ks.add_argument("--data-dir", type=Path, dest="data_dir")
    kss = ks.add_subparsers(dest="keys_command", required=True)
    kc = kss.add_parser("create", help="create a key; it is printed once")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--scope", default="transcribe,search")
    kss.add_parser("list")
    kr = kss.add_parser("revoke")
    kr.add_argument("key_id")

    q = sub.add_parser("search", help="search what was said on a running server")
    q.add_argument("query")
    q.add_argument("--url", default="http://127.0.0.1:8080")
    q.add_argument("-k", type=int, default=10)
    q.add_argument("--mode", default="hybrid", choices=["hybrid", "vector", "keyword"])
    q.add_argument("--stream-id", dest="stream_id")
    q.add_argument("--since")
    q.add_argument("--until")
    q.add_argument(
        "--min-score", dest="min_score", type=float, help="least relevance 0..1 (default: the server's, 0.5)"
    )
    q.add_argument("--json", action="store_true")
    q.add_argument("--token", help="bearer token or API key (default: $VOXINDEX_TOKEN)")

    st = sub.add_parser("stream", help="stream a file (or the microphone) to a server, show the transcript")
    st.add_argument("file", nargs="?", type=Path)
    st.add_argument("--url", default="http://127.0.0.1:8080")
    st.add_argument("--token", help="bearer token or API key (default: $VOXINDEX_TOKEN)")
    st.add_argument(
        "--fast", action="store_true", help="send as fast as the server accepts, not in real time"
    )
    st.add_argument("--mic", action="store_true", help="stream the default input device until Ctrl-C")

    ix = sub.add_parser("index", help="upload recordings to a server for background transcription and search")
    ix.add_argument("files", nargs="+", type=Path)
    ix.add_argument("--url", default="http://127.0.0.1:8080")
    ix.add_argument("--token", help="bearer token or API key (default: $VOXINDEX_TOKEN)")
    ix.add_argument("--no-wait", action="store_false", dest="wait", help="return once uploaded")
    ix.add_argument("--json", action="store_true", help="print each recording's final status as JSON")

    b = sub.add_parser("bench", help="drive N real-time WebSocket streams and report latencies")
    b.add_argument("--url", help="server to drive; default: start one in-process")
    b.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    b.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
    b.add_argument(
        "--flush-after",
        type=float,
        help="also send a flush this many seconds after each utterance ends and time flush → final",
    )
    b.add_argument(
        "--force-end-turn",
        action="store_true",
        help="with --flush-after: Deepgram Flux streams (/v2/listen), ForceEndTurn → EndOfTurn timed",
    )
    b.add_argument("--no-batching", action="store_false", dest="batching", default=None)
    b.add_argument("--json", action="store_true")
    model_args(b)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(
            model=getattr(args, "model", None),
            device=getattr(args, "device", None),
            compute_type=getattr(args, "compute_type", None),
            **{
                k: getattr(args, k, None)
                for k in (
                    "host",
                    "port",
                    "max_streams",
                    "max_batch",
                    "batching",
                    "data_dir",
                    "index",
                    "no_auth",
                    "dev",
                    "jwt_secret_file",
                    "jwt_public_key",
                    "jwks_file",
                    "import_dir",
                    "jwt_audience",
                    "jwt_issuer",
                    "log_format",
                    "forwarded_allow_ips",
                    "shutdown_grace_s",
                    "store",
                    "replica_id",
                    "store_min_free",
                    "record_retention_s",
                )
            },
        )
        # a command's output is its answer: its log shows warnings and errors, unless asked for
        # more (VOXINDEX_LOG_LEVEL); a server's log is its record: info
        chatty = args.command == "serve" or "VOXINDEX_LOG_LEVEL" in os.environ
        setup_logging(settings.log_level if chatty else "warning", settings.log_format)
        if args.command == "transcribe":
            return _transcribe(args, settings)
        if args.command == "serve":
            from voxindex.serve import serve

            serve(settings)
            return 0
        if args.command == "search":
            return _search(args, settings)
        if args.command == "stream":
            from voxindex.cli.stream import stream

            if (args.file is None) == (not args.mic):
                print("error: invalid_request: give a FILE or --mic", file=sys.stderr)
                return EXIT_BAD_INPUT
            token = args.token or settings.token
            return stream(args.url, token, args.file, fast=args.fast, mic=args.mic)
        if args.command == "index":
            from voxindex.cli.index_files import index_files

            return index_files(
                args.url, args.token or settings.token, args.files, wait=args.wait, as_json=args.json
            )
        if args.command == "token":
            return _token(args, settings)
        if args.command == "keys":
            return _keys(args, settings)
        if args.command == "bench":
            from voxindex.cli.bench import run_bench

            if args.force_end_turn and args.flush_after is None:
                _fail(VoxError("--force-end-turn needs --flush-after (when to send it)"))
                return 2
            return run_bench(
                settings,
                args.url,
                args.streams,
                args.seconds,
                args.json,
                args.flush_after,
                args.force_end_turn,
            )
    except AudioDecodeError as e:
        _fail(e)
        return EXIT_BAD_INPUT
    except VoxError as e:
        _fail(e)
        return EXIT_BAD_INPUT if e.code in {"unknown_model", "invalid_request"} else EXIT_FAILURE
    except ValueError as e:
        print(f"error: invalid_request: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return EXIT_FAILURE


def _fail(e: VoxError) -> None:
    print(f"error: {e.code}: {e.message}", file=sys.stderr)


def _transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from voxindex.api.transcripts import clock
    from voxindex.audio import decode_file
    from voxindex.loading import load_model
    from voxindex.transcribe import OfflineTranscriber

    # Decode every file first: a bad file fails fast, before the model is loaded.
    audio = {path: decode_file(path) for path in args.files}
    transcriber = OfflineTranscriber(
        load_model(settings.model, settings.device, settings.cache_dir, settings.compute_type)
    )
    for path, samples in audio.items():
        result = transcriber.transcribe(samples, language=args.language, words=args.words)
        if args.json:
            print(json.dumps({"file": str(path), **result.to_json(words=args.words)}), flush=True)
            continue
        if len(args.files) > 1:
            print(f"== {path}")
        for seg in result.segments:
            print(f"[{clock(seg.start)} --> {clock(seg.end)}] {seg.text}", flush=True)
    return 0


def _scopes(raw: str) -> list[str]:
    from voxindex.api.auth import SCOPES

    scopes = [s for s in raw.replace(" ", ",").split(",") if s]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, got {raw!r}")
    return scopes


def _retention(raw: str) -> float:
    try:
        return float(_ttl_seconds(raw, "--record-retention"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ttl_seconds(raw: str, flag: str = "--ttl") -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if raw[-1:] in units and raw[:-1].isdigit():
        return int(raw[:-1]) * units[raw[-1]]
    if raw.isdigit():
        return int(raw)
    raise ValueError(f"{flag} must look like 90s, 30m, 1h or 7d, got {raw!r}")


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from voxindex.api.auth import mint_token

    path = settings.jwt_secret_file or settings.data_dir / "dev-jwt-secret"
    secret = settings.jwt_secret or (path.read_text().strip() if path.is_file() else None)
    if not secret:
        raise ValueError(
            f"no HS256 secret: pass --jwt-secret-file, set VOXINDEX_JWT_SECRET, or run serve --dev ({path})"
        )
    print(mint_token(secret, args.sub, args.tenant or args.sub, _scopes(args.scope), _ttl_seconds(args.ttl)))
    return 0


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from voxindex.api.keys import ApiKeyStore

    store = ApiKeyStore(settings.data_dir / "keys.sqlite3")
    if args.keys_command == "create":
        record, key = store.create(args.tenant, _scopes(args.scope))
        print(key)
        print(
            f"id {record.id}, tenant {record.tenant}, scopes {' '.join(record.scopes)}: shown once",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "revoke":
        if not store.revoke(args.key_id):
            print(f"error: not_found: no active key {args.key_id!r}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return 0
    for k in store.list():
        state = "revoked" if k.revoked else "active"
        print(f"{k.id}\t{k.tenant}\t{','.join(k.scopes)}\t{state}")
    return 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from voxindex.api.transcripts import clock

    params = {"q": args.query, "k": args.k, "mode": args.mode}
    params.update({k: getattr(args, k) for k in ("stream_id", "since", "until") if getattr(args, k)})
    if args.min_score is not None:
        params["min_score"] = args.min_score
    try:
        token = args.token or settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.get(f"{args.url.rstrip('/')}/v1/search", params=params, headers=headers, timeout=30)
    except httpx.HTTPError as e:
        print(f"error: unreachable: {args.url}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    body = response.json()
    if response.status_code != 200:
        error = body.get("error", {})
        print(
            f"error: {error.get('code', response.status_code)}: {error.get('message', body)}", file=sys.stderr
        )
        return EXIT_BAD_INPUT if response.status_code < 500 else EXIT_FAILURE
    if args.json:
        print(json.dumps(body))
        return 0
    if not body["hits"]:
        cut = body["min_score"]
        print(f"nothing found: no segment says that (relevance ≥ {cut}; --min-score 0 shows the nearest)")
        return 0
    width = shutil.get_terminal_size((120, 20)).columns
    print(f"{'score':>5}  {'source':<13} {'from':<12}  text")
    for hit in body["hits"]:
        source = ("rec " if hit.get("recording_id") else "live ") + hit["stream_id"][:8]
        line = f"{hit['score']:5.2f}  {source:<13} {clock(hit['start']):<12}  {hit['text']}"
        print(line if len(line) <= width else line[: width - 1] + "…")
    return 0

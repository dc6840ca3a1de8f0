"""The ``voxindex`` command: serve | transcribe | bench.

Every failure the user can cause ends with one ``error: <code>: <message>`` line on
stderr and a non-zero exit status (2 for bad input, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from voxindex import __version__
from voxindex.config import Settings
from voxindex.errors import AudioDecodeError, VoxError

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
            help="auto (default: int8 on CPU, float16 on CUDA), float32",
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
    model_args(s)

    q = sub.add_parser("search", help="search what was said on a running server")
    q.add_argument("query")
    q.add_argument("--url", default="http://127.0.0.1:8080")
    q.add_argument("-k", type=int, default=10)
    q.add_argument("--mode", default="hybrid", choices=["hybrid", "vector", "keyword"])
    q.add_argument("--stream-id", dest="stream_id")
    q.add_argument("--since")
    q.add_argument("--until")
    q.add_argument("--json", action="store_true")

    b = sub.add_parser("bench", help="drive N real-time WebSocket streams and report latencies")
    b.add_argument("--url", help="server to drive; default: start one in-process")
    b.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    b.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
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
                for k in ("host", "port", "max_streams", "max_batch", "batching", "data_dir", "index")
            },
        )
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        if args.command == "transcribe":
            return _transcribe(args, settings)
        if args.command == "serve":
            from voxindex.api.app import serve

            serve(settings)
            return 0
        if args.command == "search":
            return _search(args)
        if args.command == "bench":
            from voxindex.bench import run_bench

            return run_bench(settings, args.url, args.streams, args.seconds, args.json)
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
    from voxindex.audio import decode_file
    from voxindex.models.loader import load_model
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
            print(f"[{_clock(seg.start)} --> {_clock(seg.end)}] {seg.text}", flush=True)
    return 0


def _search(args: argparse.Namespace) -> int:
    import httpx

    params = {"q": args.query, "k": args.k, "mode": args.mode}
    params.update({k: getattr(args, k) for k in ("stream_id", "since", "until") if getattr(args, k)})
    try:
        response = httpx.get(f"{args.url.rstrip('/')}/v1/search", params=params, timeout=30)
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
    for hit in body["hits"]:
        where = f"{hit['stream_id'][:8]} {_clock(hit['start'])}"
        print(f"{hit['score']:.4f}  [{where}]  {hit['text']}")
    return 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{secs:06.3f}"


if __name__ == "__main__":
    sys.exit(main())

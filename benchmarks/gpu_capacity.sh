#!/usr/bin/env bash
# The GPU capacity benchmark, one shot on a bare accelerator machine (PyTorch, transformers,
# numpy, safetensors; no network). Prepare here, once:
#     .venv/bin/python benchmarks/gpu_bundle.py            # writes .gpu/a and .gpu/b
# then on the device machine, two calls in a row (the machine stays warm between them):
#     bash benchmarks/gpu_capacity.sh stash                # carry .gpu/a: kept in the stash
#     bash benchmarks/gpu_capacity.sh run [ARGS...]        # carry .gpu/b: runs, writes $OUT/gpu_capacity.json
# `run` with the first half missing runs tiny.en on random weights of its shapes and says so.
# ARGS go to benchmarks/gpu_capacity.py (e.g. --models tiny.en --budget-s 200).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${GPU_BUNDLE:-.gpu}
STASH=${VOXINDEX_GPU_STASH:-/tmp/voxindex-gpu}
PYTHON=${PYTHON:-python3}
mode=${1:-run}
shift || true
mkdir -p "$STASH"
for half in a b; do
  if [ -d "$BUNDLE/$half" ]; then cp -r "$BUNDLE/$half/." "$STASH/"; fi
done
if [ "$mode" = stash ]; then
  du -sh "$STASH"
  exit 0
fi
export PYTHONPATH="$STASH/site:$PWD/server${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
exec "$PYTHON" benchmarks/gpu_capacity.py --bundle "$STASH" --out "${OUT:-.}/gpu_capacity.json" "$@"

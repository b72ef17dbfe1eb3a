#!/usr/bin/env bash
# Sets up convkit on a fresh machine: the Fashion-MNIST package, a virtual
# environment with torch and the test tools, and the compiled extension.
# VENV (default .venv) says where the environment goes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip setuptools wheel
# torch pinned first so nothing below can pull another build of it.
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
"$VENV/bin/pip" install -q -r requirements.txt "torch==$TORCH_VERSION"
start=$(date +%s)
MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/pip" install -q --no-build-isolation --no-deps .
echo "convkit: built and installed in $(( $(date +%s) - start )) s into $VENV"

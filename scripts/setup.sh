#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything the project needs.
# torch is installed first and separately: a CPU build by default (TORCH_SPEC), so that
# nothing pulls a multi-GB CUDA build. GPU users: create .venv, install your CUDA torch
# into it, then run this script (an existing torch is kept), optionally with EXTRAS=test,gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-test}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

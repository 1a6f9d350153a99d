#!/usr/bin/env bash
# The faster CPU backend in one step: installs PyTorch's CPU wheel (torch 2.13 with its own oneDNN and MKL) into
# .build/torch2-venv and builds the libtorch backend against it (scripts/build-torch-backend.sh). On CPU hosts it runs
# the networks in about half the time of Debian's libtorch 1.13 (scripts/bench/infer.sh, README's benchmarks). The
# last line printed is the backend's path; the server loads it when started with it in MONAILABEL_TORCH_BACKEND:
#   export MONAILABEL_TORCH_BACKEND="$(scripts/torch-wheel-backend.sh | tail -1)"
#   scripts/demo.sh
# TORCH_SPEC overrides the wheel (default torch==2.13.0+cpu). The `+cpu` wheels live on PyTorch's own index, which is
# asked only when pip's configured sources lack it (PyPI's plain torch wheels carry CUDA and are several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
VENV=.build/torch2-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/pip" install -q "$TORCH_SPEC" 2>/dev/null; then
  "$VENV/bin/pip" install -q --extra-index-url https://download.pytorch.org/whl/cpu "$TORCH_SPEC" >&2
fi
TORCH_DIR="$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
scripts/build-torch-backend.sh --torch "$TORCH_DIR" | tail -1

#!/usr/bin/env bash
# Sets up (or refreshes) the project's virtual environment in .venv.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# torch first, pinned: this picks the CPU build from the machine's local wheel
# folder; an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# llama-cpp-python compiles from source the first time (about 6 minutes on 2
# cores); pip caches the built wheel for later runs.
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  .venv/bin/python -m pip install -q -e ".[test]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import sys; print(sys.version.split()[0])'))"

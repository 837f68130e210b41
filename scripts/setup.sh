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
# Qt's X11 platform plugin needs a few system libraries to open a real window
# (tests run offscreen and do not). Install them where we can, else say how.
QT_LIBS="libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0
  libxkbcommon-x11-0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1
  libegl1 libgl1 libfontconfig1 libdbus-1-3"
missing=""
known_libs=$(ldconfig -p 2>/dev/null || true)  # read once: grep -q on a pipe trips pipefail
for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxkbcommon-x11.so.0 libxcb-keysyms.so.1 \
           libxcb-render-util.so.0 libxcb-image.so.0 libEGL.so.1 libfontconfig.so.1; do
  grep -q "$lib" <<<"$known_libs" || missing="$missing $lib"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Qt's X11 libraries (missing:$missing)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $QT_LIBS) >/dev/null \
      || echo "setup: warning: could not install Qt's X11 libraries; the studio window may not open"
  else
    echo "setup: warning: Qt needs these system libraries to open a window:$missing"
    echo "       on Debian/Ubuntu: sudo apt-get install $(echo $QT_LIBS)"
  fi
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import sys; print(sys.version.split()[0])'))"

#!/usr/bin/env bash
# valgrind.sh [BUILD_DIR]: every unit test (suite "unit") under valgrind
# memcheck through the `valgrind` test setup of meson.build: leaks (definite,
# indirect, possible) and uninitialised/invalid accesses fail the test.
# BUILD_DIR (default build-vg) is a plain debug build, set up if missing.
# Run from anywhere; the repository root is found from this script.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-vg}

command -v valgrind >/dev/null || { echo "valgrind missing: run tools/install-deps.sh" >&2; exit 1; }

if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" >/dev/null
else
  meson setup "$build" -Dwerror=true --buildtype=debug -Dbench=false >/dev/null
fi
ninja -C "$build"
meson test -C "$build" --setup valgrind --suite unit --print-errorlogs --num-processes 2

#!/usr/bin/env bash
# bootstrap.sh demo|test: the two set-up commands of the README.
#   demo  install what is missing, build, run the live demo (tools/demo.sh)
#   test  install what is missing, build, run the whole test suite
# Run from the repository root (../shared beside it holds the test vectors).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case $mode in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

if [ "$(id -u)" -eq 0 ]; then
  bash tools/install-deps.sh
else
  sudo bash tools/install-deps.sh
fi

build=${KEYHOLD_BUILD_DIR:-build}
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" >/dev/null
else
  meson setup "$build" -Dwerror=true >/dev/null
fi
ninja -C "$build"

if [ "$mode" = demo ]; then
  exec bash tools/demo.sh "$build"
fi
meson test -C "$build" --print-errorlogs --num-processes 2

# Every benchmark runs once, briefly, so they keep working (numbers not
# judged; bench/run-all.sh without `brief` gives the real figures).
bash bench/run-all.sh "$build" brief

# The unit tests under valgrind memcheck (tools/valgrind.sh; a debug build in
# ${build}-vg, about 30 s on 2 cores); skip with KEYHOLD_VALGRIND=0.
if [ "${KEYHOLD_VALGRIND:-1}" = 1 ]; then
  bash tools/valgrind.sh "${build}-vg"
fi

# The same suite again, built by clang (so both compilers must stay
# warning-free) with AddressSanitizer + UndefinedBehaviorSanitizer (leaks
# included: keyholdd's clean exit after SIGTERM is checked by tests).
if [ "${KEYHOLD_SANITIZE:-1}" = 1 ]; then
  asan=${build}-asan
  if [ -f "$asan/build.ninja" ]; then
    meson setup --reconfigure "$asan" >/dev/null
  else
    CC=clang CXX=clang++ meson setup "$asan" -Dwerror=true \
      -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
  fi
  ninja -C "$asan"
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    meson test -C "$asan" --print-errorlogs --num-processes 2
fi

# Every libFuzzer target, briefly (tools/fuzz.sh SECONDS runs them longer).
if [ "${KEYHOLD_FUZZ_SECONDS:-20}" != 0 ]; then
  bash tools/fuzz.sh "${KEYHOLD_FUZZ_SECONDS:-20}"
fi

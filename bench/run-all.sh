#!/usr/bin/env bash
# run-all.sh [BUILD_DIR] [brief]: runs every benchmark built in BUILD_DIR
# (default: build) one after the other, shows their output, then repeats all
# their RESULT lines at the end. `brief` uses short, small parameters so CI
# can run it quickly; it checks the benchmarks still work, not the figures.
# Exit status: 0 when every benchmark exited 0 and printed a RESULT line.
# A full run in which every benchmark passed rewrites the summary table at
# the top of docs/PERFORMANCE.md (bench/summary.py) from its RESULT lines;
# brief mode never touches the docs.
#   full:  record_bench 1.0; channel_bench 1.0; keyops_bench 1.0; sign_bench 1.0;
#          handshake_bench 3 8; grpc_floor_bench 2; setup_bench 1; startup_bench 20;
#          scale_bench 10000; proxy_bench 5 1.0 256
#   brief: record_bench 0.02; channel_bench 0.05; keyops_bench 0.05; sign_bench 0.05;
#          handshake_bench 0.3 2; grpc_floor_bench 0.1; setup_bench 0.05; startup_bench 3;
#          scale_bench 500; proxy_bench 2 0.2 32
set -uo pipefail
build=${1:-build}
mode=${2:-full}
case $mode in
  brief)
    runs=("record_bench 0.02" "channel_bench 0.05" "keyops_bench 0.05" "sign_bench 0.05" "handshake_bench 0.3 2" "grpc_floor_bench 0.1" "setup_bench 0.05" "startup_bench 3" "scale_bench 500" "proxy_bench 2 0.2 32")
    limit=180
    ;;
  full)
    runs=("record_bench" "channel_bench" "keyops_bench" "sign_bench" "handshake_bench" "grpc_floor_bench" "setup_bench 1" "startup_bench" "scale_bench" "proxy_bench 5 1.0 256")
    limit=900
    ;;
  *)
    echo "usage: $0 [BUILD_DIR] [brief]" >&2
    exit 2
    ;;
esac
bench=$build/bench
[ -d "$bench" ] || { echo "run-all.sh: no $bench (build with -Dbench=true)" >&2; exit 2; }
out=$(mktemp -d /tmp/kh-runall.XXXXXX)
trap 'rm -rf "$out"' EXIT

failed=0
start=$(date +%s)
for r in "${runs[@]}"; do
  read -r name args <<<"$r"
  if [ ! -x "$bench/$name" ]; then
    echo "## $name: not built" >&2
    failed=1
    continue
  fi
  echo "## $name ${args:-}"
  t0=$(date +%s%N)
  # shellcheck disable=SC2086 # args are words on purpose
  timeout --kill-after=10 "$limit" "$bench/$name" $args 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '## %s: exit %d, %d.%01d s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100))
  if [ "$rc" -ne 0 ] || ! grep -q '^RESULT ' "$out/$name.log"; then
    echo "## $name FAILED" >&2
    failed=1
  fi
done

took=$(($(date +%s) - start))
echo "## all RESULT lines ($mode, $took s):"
for r in "${runs[@]}"; do
  read -r name _ <<<"$r"
  [ -f "$out/$name.log" ] && grep '^RESULT ' "$out/$name.log"
done | tee "$out/results"

if [ "$mode" = full ]; then
  doc=$(dirname "$0")/../docs/PERFORMANCE.md
  if [ "$failed" -ne 0 ]; then
    echo "## $doc: summary not updated (a benchmark failed)" >&2
  elif ! /usr/bin/python3 "$(dirname "$0")/summary.py" "$out/results" "$doc" "$build" "$took"; then
    echo "## $doc: summary.py failed" >&2
    failed=1
  fi
fi
exit $failed

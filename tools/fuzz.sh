#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET...]: build the libFuzzer targets with clang
# (build-fuzz/) and run each for SECONDS (default 60) from its checked-in
# seed corpus (fuzz/corpus/TARGET). New inputs go to a temporary directory;
# a crash leaves crash-* files in the current directory and fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
build=$root/build-fuzz
if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$build" "$root" -Dfuzz=true -Dtests=false -Dbench=false -Db_lundef=false >/dev/null
fi
ninja -C "$build" | tail -n 1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_record fuzz_channel fuzz_noise fuzz_s2a_hs fuzz_s2a_session fuzz_s2a_v2 fuzz_tls_engine fuzz_identity fuzz_policy fuzz_ticket_keys fuzz_verify fuzz_health fuzz_channel_session fuzz_key_ops fuzz_pkcs11_sig)
export KH_TEST_PKI=$root/tests/make-test-pki.sh
work=$(mktemp -d /tmp/kh-fuzz.XXXXXX)
trap 'rm -rf "$work" /tmp/kh-fuzz-*' EXIT # targets make their PKI under /tmp/kh-fuzz-*
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "fuzz: $t for ${secs}s"
  dict=()
  [ -f "$root/fuzz/${t#fuzz_}.dict" ] && dict=(-dict="$root/fuzz/${t#fuzz_}.dict")
  if ! "$build/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 "${dict[@]}" "$work/$t" "$root/fuzz/corpus/$t" \
      >"$work/$t.log" 2>&1; then
    tail -n 40 "$work/$t.log"
    echo "fuzz: $t FAILED"
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^Done" "$work/$t.log" | sed "s/^/fuzz: $t: /"
done
echo "fuzz: all targets ran clean"

#!/usr/bin/env bash
# The ctypes binding (client-shim/python/keyhold.py) through libkeyhold:
# struct layout against the C compiler, mTLS to openssl s_server -rev (data
# both ways, KeyUpdate), and its errors (no sidecar, wrong peer) as
# KeyholdError with the C shim's codes. tests/tools/python_mtls.py.
. "$(dirname "$0")/lib.sh"
: "${KEYHOLD_LIB:?}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export KEYHOLD_LIB
make_pki
start_keyholdd kd "$T/pki/ids"
start_rev_server

# sizeof/offsetof of the structs the binding mirrors, as the C compiler sees keyhold.h.
cat >"$T/layout.c" <<'C'
#include <stddef.h>
#include <stdio.h>
#include "keyhold.h"
#define F(s, f) printf(" %s=%zu", #f, offsetof(s, f))
int main(void) {
  printf("kh_error %zu", sizeof(kh_error));
  F(kh_error, code); F(kh_error, msg);
  printf("\nkh_handshake_opts %zu", sizeof(kh_handshake_opts));
  F(kh_handshake_opts, local_identity); F(kh_handshake_opts, expect_peers);
  F(kh_handshake_opts, expect_peer_count); F(kh_handshake_opts, alpn);
  F(kh_handshake_opts, alpn_count); F(kh_handshake_opts, server_name);
  F(kh_handshake_opts, timeout_ms); F(kh_handshake_opts, access_token);
  printf("\nkh_conn_info %zu", sizeof(kh_conn_info));
  F(kh_conn_info, version); F(kh_conn_info, ciphersuite); F(kh_conn_info, alpn);
  F(kh_conn_info, peer_identity); F(kh_conn_info, local_identity);
  F(kh_conn_info, connection_id); F(kh_conn_info, resumed);
  printf("\n");
  return 0;
}
C
if cc -std=c11 -Wall -Werror -I "$SRC/client-shim" -o "$T/layout" "$T/layout.c" 2>"$T/layout.err" \
  && "$T/layout" >"$T/layout.txt"; then
  pass "layout probe compiled against keyhold.h"
else
  fail "layout probe: $(cat "$T/layout.err")"
fi

# The code the C shim (keyhold connect) reports for a wrong expected peer.
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --expect-peer spiffe://example.org/somebody-else "127.0.0.1:$port" >/dev/null 2>"$T/c.err" || true
code=$(sed -n 's/.*not one of the 1 expected peers \[\([A-Z_]*\)\]$/\1/p' "$T/c.err" | head -1)
[ -n "$code" ] && pass "C shim: wrong peer refused with $code" || fail "C shim wrong peer: $(cat "$T/c.err")"

# A sanitizer build's libkeyhold expects the sanitizer runtime from the
# executable; python3 has none, so it is preloaded (leak checks off: the
# interpreter's own allocations are not ours).
PRELOAD=()
undef=$(nm -D --undefined-only "$KEYHOLD_LIB" 2>/dev/null || true)
if [[ "$undef" == *__asan_* ]]; then
  rt=$(clang -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null || true)
  [ -f "$rt" ] || { fail "ASan build, but no clang ASan runtime to preload (libclang-rt-14-dev)"; finish; }
  PRELOAD=(env LD_PRELOAD="$rt" ASAN_OPTIONS=detect_leaks=0)
fi
if timeout 60 "${PRELOAD[@]}" python3 "$SRC/tests/tools/python_mtls.py" "$T/kd.sock" "$port" "$T/absent.sock" \
  "$T/layout.txt" "${code:-?}" "$T/pki" >"$T/py.out" 2>"$T/py.err"; then
  st=0
else
  st=$?
fi
cat "$T/py.out"
PASSES=$((PASSES + $(grep -c '^ok - ' "$T/py.out" || true)))
FAILS=$((FAILS + $(grep -c '^not ok - ' "$T/py.out" || true)))
[ "$st" -eq 0 ] && pass "python_mtls.py exited 0" || fail "python_mtls.py exited $st: $(tail -5 "$T/py.err")"
grep -q "result=OK" "$T/kd.log" && pass "sidecar logged the Python client's handshakes" || fail "sidecar log"
finish

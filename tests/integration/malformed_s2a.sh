#!/usr/bin/env bash
# Malformed and out-of-order S2A requests from a raw protobuf client: each
# gets its precise status; the sidecar keeps serving good clients; SIGTERM
# stops it cleanly and removes the socket.
. "$(dirname "$0")/lib.sh"
: "${S2A_RAW:?}"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"
port=$(free_port)
mkfifo "$T/srv.in"
exec 5<>"$T/srv.in"
bg openssl s_server -tls1_3 -Verify 1 -CAfile "$P/ca/ca.crt" -cert "$P/peer/server.crt" \
  -key "$P/peer/server.key" -accept "127.0.0.1:$port" -rev <"$T/srv.in" >"$T/srv.out" 2>&1
wait_for "$T/srv.out" ACCEPT

good_client() {
  local out
  out=$(echo "good $1" | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" \
    --identity spiffe://example.org/client "127.0.0.1:$port" 2>>"$T/good.err") || true
  [ "$out" = "$(python3 -c 'import sys; print(sys.argv[1][::-1])' "good $1")" ] \
    && pass "after $1: a good client still succeeds" || fail "after $1: good client failed: $(tail -1 "$T/good.err")"
}

check() { # check CASE EXPECTED_CODE DETAIL_PATTERN
  local out
  out=$(timeout 20 "$S2A_RAW" --socket "$T/kd.sock" --expect "$2" "$1" 2>&1) \
    && pass "$1 -> $2 ($out)" || fail "$1: wanted $2, got: $out"
  [ -z "$3" ] || { grep -qE -- "$3" <<<"$out" && pass "$1: details say '$3'" || fail "$1: details: $out"; }
  good_client "$1"
}

check next-first FAILED_PRECONDITION "next before client_start/server_start"
check double-start FAILED_PRECONDITION "client_start after the session already started"
check garbage INVALID_ARGUMENT "malformed SessionReq"
check no-request INVALID_ARGUMENT "carries no request"
check empty-next INVALID_ARGUMENT "empty in_bytes"
check unknown-identity NOT_FOUND "unknown local identity 'spiffe://example.org/nobody'"
check oversized RESOURCE_EXHAUSTED ""
check garbage-tls INVALID_ARGUMENT "TLS handshake failed"
check half-close CANCELLED "closed by the client"
check unknown-method UNIMPLEMENTED "is not served by keyholdd"
check disconnect-mid CANCELLED ""
kill -0 "${PIDS[0]}" && pass "keyholdd still running after every bad request" || fail "keyholdd died"
grep -q "result=INVALID_ARGUMENT" "$T/kd.log" && pass "failures are logged with their status" || fail "no failure log line"

# A handshake in flight when SIGTERM arrives gets a status, not a hang.
bg "$S2A_RAW" --socket "$T/kd.sock" --expect CANCELLED hold >"$T/hold.out" 2>&1
hold_pid=${PIDS[-1]}
sleep 0.5 # let the held stream reach the sidecar
kill -TERM "${PIDS[0]}"
if wait "$hold_pid"; then pass "in-flight handshake at SIGTERM: $(cat "$T/hold.out")"; else
  grep -qE "UNAVAILABLE|CANCELLED" "$T/hold.out" && pass "in-flight handshake at SIGTERM: $(cat "$T/hold.out")" \
    || fail "in-flight handshake at SIGTERM: $(cat "$T/hold.out")"
fi
for _ in $(seq 100); do kill -0 "${PIDS[0]}" 2>/dev/null || break; sleep 0.05; done
wait "${PIDS[0]}" && pass "SIGTERM: keyholdd exited 0" || fail "SIGTERM: exit status $?"
[ ! -e "$T/kd.sock" ] && pass "SIGTERM: socket file removed" || fail "socket file left behind"
finish

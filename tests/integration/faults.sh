#!/usr/bin/env bash
# Faults: keyholdd killed (SIGKILL) and restarted under a running app; a peer
# that vanishes mid-handshake.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"
kd_pid=${PIDS[-1]}
start_serve app --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo

client() { # client NAME: one s_client line through the app
  (echo "line $1"; sleep 0.5) | timeout 5 openssl s_client -tls1_3 -quiet -connect "127.0.0.1:$PORT" \
    -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" >"$T/$1.out" 2>"$T/$1.err" || true
  grep -q "^line $1" "$T/$1.out"
}

# An established connection (its keys are in the app) outlives the sidecar.
mkfifo "$T/long.in"
exec 5<>"$T/long.in"
bg openssl s_client -tls1_3 -quiet -connect "127.0.0.1:$PORT" -cert "$P/peer/client.crt" \
  -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" <"$T/long.in" >"$T/long.out" 2>"$T/long.err"
echo "before kill" >&5
wait_for "$T/long.out" "^before kill" && pass "established connection echoes" || fail "long connection"

kill -KILL "$kd_pid"
wait "$kd_pid" 2>/dev/null || true
echo "after kill" >&5
wait_for "$T/long.out" "^after kill" && pass "established connection keeps working after SIGKILL of keyholdd" \
  || fail "established connection broke with the sidecar"

start=$(date +%s)
client during && fail "a handshake succeeded without a sidecar" || pass "new handshake fails while keyholdd is down"
wait_for "$T/app.log" "client .* failed: sidecar unavailable" 15 && pass "app reports 'sidecar unavailable'" \
  || fail "app error: $(tail -2 "$T/app.log")"
elapsed=$(( $(date +%s) - start ))
# The shim's deadline is 10 s: a hang on the dead transport would show as >= 10 s.
[ "$elapsed" -le 7 ] && pass "failure was prompt (${elapsed} s, no hang)" || fail "failure took ${elapsed} s"

# Restart keyholdd on the same socket: the same app process recovers.
start_keyholdd kd2 "$P/ids"
mv "$T/kd2.sock" "$T/kd.sock" 2>/dev/null || true
ok=0
for i in $(seq 10); do client "after-restart-$i" && { ok=1; break; }; sleep 0.3; done
[ "$ok" = 1 ] && pass "after restart the app's handshakes succeed again (no app restart)" || fail "app did not recover"
echo "still alive" >&5
wait_for "$T/long.out" "^still alive" && pass "established connection unaffected by the restart" || fail "long connection after restart"
exec 5>&-

# A peer that connects, sends half a ClientHello and vanishes.
python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]))
s.close()
PY
wait_for "$T/app.log" "client .* failed: .*(closed|peer)" && pass "peer vanishing mid-handshake: clean error" || fail "no error for vanished peer"
client final && pass "app and sidecar still serve after the vanished peer" || fail "final client"
finish

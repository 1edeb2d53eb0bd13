#!/usr/bin/env bash
# Server-side handshakes have their own budget (reliability finding 4): TCP
# clients of `keyhold serve` that send part of a ClientHello and stall must
# not spend the app's uid's handshake budget. Under a flood of 300 stalled
# ClientHellos against serve (uid 0), root's client-side handshakes through
# the same keyholdd all succeed, the oldest stalled server handshakes are
# shed past max_server_handshakes_per_process, and a real TLS client of
# serve still completes its handshake during the flood.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_rev_server
cat >"$T/policy.yaml" <<YAML
limits: {max_handshakes_per_caller: 32, handshake_timeout_ms: 15000}
identities:
  client: {callers: {uids: [0]}}
  server: {callers: {uids: [0]}}
YAML
bg "$KEYHOLDD" --policy "$T/policy.yaml" --socket "$T/kd.sock" --identities "$P/ids" 2>"$T/kd.log"
KD=${PIDS[-1]}; KD_PIDS+=("$KD"); KD_LOGS+=("$T/kd.log")
wait_for "$T/kd.log" "listening on"
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo

# 300 TCP clients (the uid's budget is 32; serve's process budget the default 256): a TLS record header and the first bytes of a ClientHello.
python3 - "$PORT" "$T/flood.ready" <<'PY' &
import socket, sys, time
conns = []
for _ in range(300):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16)
    conns.append(s)
    time.sleep(0.002)
open(sys.argv[2], "w").write("ready")
time.sleep(12)
PY
FLOOD=$!
PIDS+=("$FLOOD")
for _ in $(seq 200); do [ -s "$T/flood.ready" ] && break; sleep 0.05; done
sleep 0.5

ok=0
for i in $(seq 5); do
  echo "app-$i" | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
    --expect-peer spiffe://example.org/peer-server "127.0.0.1:$port" 2>>"$T/app.err" | grep -q "$(echo "app-$i" | rev)" \
    && ok=$((ok + 1))
done
[ "$ok" -eq 5 ] && pass "the app's 5 client-side handshakes succeed while 300 stalled ClientHellos hit its server" \
  || fail "client-side handshakes: $ok/5: $(sort "$T/app.err" | uniq -c | head -3)"
echo "peer-line" | timeout 10 openssl s_client -tls1_3 -quiet -connect "127.0.0.1:$PORT" \
  -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" >"$T/peer.out" 2>"$T/peer.err" || true
grep -q "^peer-line" "$T/peer.out" && pass "a real TLS client of serve completes during the flood" \
  || fail "TLS client of serve: $(tail -3 "$T/peer.err")"
wait_for "$T/kd.log" "result=RESOURCE_EXHAUSTED reason=\"shed: process [0-9]+ has 257 server-side handshakes in progress" 5 \
  && pass "the oldest stalled server handshakes were shed" || fail "no shed line"
grep -q "caller uid 0 already has .* handshakes in progress" "$T/kd.log" \
  && fail "the uid's client-side budget was exhausted" || pass "the uid's client-side budget was never exhausted"
n=$(grep -c 'shed: process' "$T/kd.log")
[ "$n" -ge 44 ] && pass "$n stalled handshakes shed (300 less the 256 cap, plus what the real client displaced)" \
  || fail "only $n shed"
kill "$FLOOD" 2>/dev/null || true
kill -0 "$KD" && pass "keyholdd still running" || fail "keyholdd died"
finish

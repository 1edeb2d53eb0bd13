#!/usr/bin/env bash
# Failures with clear reasons: wrong CA on either side, --expect-peer
# mismatch, unknown identity, sidecar not running.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"

# 1. Server certificate from another CA: keyhold connect fails, s_server sees the alert.
port=$(free_port)
mkfifo "$T/rs.in"
exec 7<>"$T/rs.in" # s_server ends at stdin EOF: keep it open
bg openssl s_server -tls1_3 -Verify 1 -CAfile "$P/ca/ca.crt" -cert "$P/rogue/server.crt" \
  -key "$P/rogue/server.key" -accept "127.0.0.1:$port" >"$T/rs.out" 2>&1 <"$T/rs.in"
wait_for "$T/rs.out" ACCEPT
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  "127.0.0.1:$port" >/dev/null 2>"$T/c1.err" && fail "rogue server accepted" || pass "rogue server: connect failed"
grep -q "peer certificate rejected: unable to get local issuer certificate" "$T/c1.err" \
  && pass "rogue server: reason names the certificate problem" || fail "rogue server reason: $(cat "$T/c1.err")"
wait_for "$T/rs.out" "alert unknown ca|unknown ca" && pass "rogue server: peer received the unknown_ca alert" || fail "no alert at s_server"

# 2. Client certificate from another CA to keyhold serve: both sides fail.
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo
(echo hi; sleep 1) | timeout 5 openssl s_client -tls1_3 -quiet -connect "127.0.0.1:$PORT" \
  -cert "$P/rogue/client.crt" -key "$P/rogue/client.key" -CAfile "$P/ca/ca.crt" >"$T/c2.out" 2>"$T/c2.err" || true
grep -qi "alert unknown ca\|unknown ca" "$T/c2.err" && pass "rogue client: s_client got the unknown_ca alert" || fail "rogue client alert: $(tail -2 "$T/c2.err")"
wait_for "$T/serve.log" "client .* failed: sidecar: .*peer certificate rejected" && pass "rogue client: keyhold serve logged the reason" || fail "serve reason"

# 3. --expect-peer mismatch.
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --expect-peer spiffe://example.org/somebody-else "127.0.0.1:$PORT" >/dev/null 2>"$T/c3.err" \
  && fail "expect-peer mismatch accepted" || pass "expect-peer mismatch: connect failed"
grep -q "peer spiffe://example.org/server is not one of the 1 expected peers" "$T/c3.err" \
  && pass "expect-peer mismatch: reason names the peer" || fail "expect-peer reason: $(cat "$T/c3.err")"

# 3b. No expected peers: the server name is checked against the DNS/IP SANs.
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --servername wrong.example.org "127.0.0.1:$PORT" >/dev/null 2>"$T/c3b.err" \
  && fail "server name mismatch accepted" || pass "server name mismatch: connect failed"
grep -q "does not match server name wrong.example.org" "$T/c3b.err" \
  && pass "server name mismatch: reason names the server name" || fail "server name reason: $(cat "$T/c3b.err")"
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  "127.0.0.1:$PORT" >"$T/c3c.out" 2>"$T/c3c.err" && grep -q "^hi" "$T/c3c.out" \
  && pass "IP literal checked against the IP SAN and accepted" || fail "IP SAN: $(cat "$T/c3c.err")"

# 4. Unknown local identity.
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/nobody \
  "127.0.0.1:$PORT" >/dev/null 2>"$T/c4.err" && fail "unknown identity accepted" || pass "unknown identity: connect failed"
grep -q "unknown local identity 'spiffe://example.org/nobody'" "$T/c4.err" \
  && pass "unknown identity: reason names it" || fail "unknown identity reason: $(cat "$T/c4.err")"

# 5. Sidecar not running: a prompt, clear error.
start=$(date +%s)
echo hi | timeout 20 "$KEYHOLD" connect --sidecar "$T/absent.sock" "127.0.0.1:$PORT" >/dev/null 2>"$T/c5.err" \
  && fail "no sidecar but connect succeeded" || pass "no sidecar: connect failed"
grep -q "sidecar unavailable at $T/absent.sock" "$T/c5.err" && pass "no sidecar: 'sidecar unavailable'" || fail "no sidecar reason: $(cat "$T/c5.err")"
[ $(( $(date +%s) - start )) -le 5 ] && pass "no sidecar: failed within 5 s" || fail "no sidecar: too slow"

# The sidecar survived all of it.
echo "still here" | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  "127.0.0.1:$PORT" >"$T/ok.out" 2>/dev/null || true
grep -q "still here" "$T/ok.out" && pass "sidecar and server still serve good clients" || fail "good client after failures"
finish

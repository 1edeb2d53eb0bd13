#!/usr/bin/env bash
# Observability: Prometheus metrics on their own listener (scraped with
# curl, counters checked to move), the gRPC health protocol (our `keyhold
# health` and Debian's python3-grpcio as an independent client, Check and
# Watch, SERVING -> NOT_SERVING when the only certificate expires), JSON
# logs (every line one object), the expiry warning and the rotation line.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3 # Debian's, with python3-grpcio and python3-cryptography
TOOLS="$(dirname "$0")/../tools"
make_pki
P=$T/pki

metric() { # metric NAME_AND_LABELS_PREFIX: the value of the first matching series
  curl -s "http://$MADDR/metrics" | awk -v k="$1" 'index($0, k) == 1 { print $NF; exit }'
}

# --- metrics, health and JSON logs on one keyholdd -------------------------
start_keyholdd kd "$P/ids" --metrics-listen tcp://127.0.0.1:0 --log-format json \
  --cert-expiry-warning-hours 8760
MADDR=$(sed -n 's|.*metrics on http://\([0-9.]*:[0-9]*\)/metrics.*|\1|p' "$T/kd.log" | head -1)
[ -n "$MADDR" ] && pass "metrics listener announced ($MADDR)" || fail "no metrics address in the log"
curl -s -D "$T/h" "http://$MADDR/metrics" >"$T/m0"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/h" && pass "exposition content type" ||
  fail "content type: $(grep -i content-type "$T/h")"
[ "$(metric keyhold_identities_loaded)" = 2 ] && pass "identities_loaded 2" || fail "identities_loaded"
end=$(date -d "$(openssl x509 -in "$P/ids/client/tls.crt" -noout -enddate | cut -d= -f2)" +%s)
left=$(metric 'keyhold_certificate_expiry_seconds{dir="client"')
diff=$(( end - $(date +%s) - ${left%.*} ))
[ "${diff#-}" -le 5 ] && pass "certificate_expiry_seconds matches notAfter (within ${diff#-} s)" ||
  fail "expiry gauge ${left} vs notAfter $end"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$MADDR/other")" = 404 ] && pass "404 elsewhere" ||
  fail "not 404 for /other"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$MADDR/metrics")" = 405 ] &&
  pass "405 for POST" || fail "not 405 for POST"

# Counters move: one good handshake, one refused.
start_rev_server
rev_handshake good && pass "handshake through keyholdd" || fail "handshake: $(cat "$T/good.err")"
echo x | "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/nobody \
  "127.0.0.1:$port" >/dev/null 2>&1 && fail "unknown identity accepted"
ok=$(metric 'keyhold_handshakes_total{service="s2a.proto.S2AService",side="client",result="OK",identity="spiffe://example.org/client"}')
[ "$ok" = 1 ] && pass "handshakes_total OK counted" || fail "handshakes_total OK: '$ok'"
nf=$(metric 'keyhold_refusals_total{service="s2a.proto.S2AService",reason="NOT_FOUND"}')
[ "$nf" = 1 ] && pass "refusals_total NOT_FOUND counted" || fail "refusals NOT_FOUND: '$nf'"
cnt=$(metric 'keyhold_handshake_duration_seconds_count{service="s2a.proto.S2AService"}')
inf=$(metric 'keyhold_handshake_duration_seconds_bucket{service="s2a.proto.S2AService",le="+Inf"}')
calls=$(curl -s "http://$MADDR/metrics" |
  awk 'index($0, "keyhold_handshakes_total{service=\"s2a.proto.S2AService\"") == 1 { n += $NF } END { print n }')
[ "$cnt" = "$calls" ] && [ "$inf" = "$calls" ] && [ "$calls" -ge 2 ] &&
  pass "duration histogram counts every call ($calls)" || fail "histogram count=$cnt +Inf=$inf calls=$calls"
[ "$(metric keyhold_handshakes_in_flight)" = 0 ] && pass "in_flight back to 0" || fail "in_flight"

# Health: ours and an independent client.
out=$("$KEYHOLD" health --sidecar "$T/kd.sock") && [ "$out" = SERVING ] &&
  pass "keyhold health: SERVING, exit 0" || fail "keyhold health: '$out'"
st=0
"$KEYHOLD" health --sidecar "$T/kd.sock" --service no.such.Service >/dev/null 2>"$T/h.err" || st=$?
[ "$st" = 1 ] && grep -q "gRPC status 5: sidecar: grpc.health.v1: unknown service" "$T/h.err" &&
  pass "unknown service: NOT_FOUND, exit 1" || fail "unknown service: exit $st $(cat "$T/h.err")"
st=0
"$KEYHOLD" health --sidecar "$T/none.sock" >/dev/null 2>"$T/h2.err" || st=$?
[ "$st" = 1 ] && grep -q "gRPC status 14" "$T/h2.err" && pass "no sidecar: UNAVAILABLE, exit 1" ||
  fail "no sidecar: exit $st"
st=0
"$KEYHOLD" health >/dev/null 2>"$T/h3.err" || st=$?
[ "$st" = 2 ] && grep -q -- "--sidecar PATH is required" "$T/h3.err" && pass "missing --sidecar named" ||
  fail "missing --sidecar: exit $st"
[ "$($PY "$TOOLS/health_client.py" "$T/kd.sock" check)" = SERVING ] && pass "grpcio Check: SERVING" ||
  fail "grpcio Check"
[ "$($PY "$TOOLS/health_client.py" "$T/kd.sock" check s2a.proto.v2.S2AService)" = SERVING ] &&
  pass "grpcio Check of a served service" || fail "grpcio Check s2a.proto.v2.S2AService"
[ "$($PY "$TOOLS/health_client.py" "$T/kd.sock" check nope)" = "NOT_FOUND grpc.health.v1: unknown service 'nope'" ] &&
  pass "grpcio Check of an unknown service: NOT_FOUND" || fail "grpcio Check nope"
[ "$($PY "$TOOLS/health_client.py" "$T/kd.sock" watch nope)" = SERVICE_UNKNOWN ] &&
  pass "grpcio Watch of an unknown service: SERVICE_UNKNOWN" || fail "grpcio Watch nope"

# Logs: every line one JSON object with the text line's fields.
$PY - "$T/kd.log" <<'PYEOF' && pass "every log line is a JSON object with time/prog/pid/level/msg" || fail "JSON log"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines
for l in lines:
    o = json.loads(l)
    assert {"time", "prog", "pid", "level", "msg"} <= o.keys(), l
    assert o["prog"] == "keyholdd" and o["level"] in ("DEBUG", "INFO", "WARN", "ERROR"), l
hs = [json.loads(l) for l in lines if '"handshake side=client' in l and '"result":"OK"' in l]
assert hs and hs[0]["local"] == "spiffe://example.org/client", hs
PYEOF
serial=$(openssl x509 -in "$P/ids/client/tls.crt" -noout -serial | cut -d= -f2)
grep -q "\"level\":\"WARN\",\"msg\":\"certificate expires soon dir=client .*\"serial\":\"$serial\"" "$T/kd.log" &&
  pass "expiry warning names the certificate's serial" || fail "no expiry warning for serial $serial"
[ "$(grep -c 'certificate expires soon dir=client' "$T/kd.log")" = 1 ] && pass "warned once" ||
  fail "warned $(grep -c 'certificate expires soon dir=client' "$T/kd.log") times"

# --- NOT_SERVING when the only certificate has expired ----------------------
mkdir -p "$T/one" && cp -r "$P/ids/server" "$T/one/"
start_keyholdd one "$T/one" --metrics-listen "unix:$T/metrics.sock"
curl -s --unix-socket "$T/metrics.sock" http://x/metrics | grep -q '^keyhold_identities_loaded 1' &&
  pass "metrics on a Unix socket" || fail "metrics on a Unix socket"
$PY "$TOOLS/health_client.py" "$T/one.sock" watch "" 2 >"$T/watch.out" 2>&1 &
WATCH=$!
PIDS+=("$WATCH")
wait_for "$T/watch.out" SERVING 10
$PY "$TOOLS/expired_cert.py" "$P/ca/ca.crt" "$P/ca/ca.key" "$T/one/server/tls.key" \
  spiffe://example.org/server "$T/expired.crt"
cp "$T/expired.crt" "$T/one/server/.c" && mv -f "$T/one/server/.c" "$T/one/server/tls.crt"
wait_for "$T/one.log" "identity rotated dir=server .*not_after=2021-01-01T00:00:00Z" 10 &&
  pass "rotation line names serial and notAfter" || fail "rotation line"
wait_for "$T/watch.out" NOT_SERVING 10 && pass "Watch pushed NOT_SERVING after the certificate expired" ||
  fail "Watch: $(cat "$T/watch.out")"
wait "$WATCH" && pass "Watch stream ended cleanly" || fail "Watch client exit"
st=0
out=$("$KEYHOLD" health --sidecar "$T/one.sock") || st=$?
[ "$st" = 1 ] && [ "$out" = NOT_SERVING ] && pass "keyhold health: NOT_SERVING, exit 1" ||
  fail "keyhold health after expiry: '$out' exit $st"
grep -q "ERROR certificate expired dir=server" "$T/one.log" && pass "expired certificate logged" ||
  fail "no expired line"
curl -s --unix-socket "$T/metrics.sock" http://x/metrics |
  grep -q '^keyhold_reloads_total{kind="identity",result="ok"} 1' && pass "reloads_total counted" ||
  fail "reloads_total"

# --- bad flags ------------------------------------------------------------
st=0
"$KEYHOLDD" --socket "$T/x.sock" --identities "$P/ids" --metrics-listen tcp://10.1.2.3:9 \
  2>"$T/bad.err" || st=$?
[ "$st" != 0 ] && grep -q "not a loopback address" "$T/bad.err" && pass "non-loopback metrics refused" ||
  fail "non-loopback metrics: exit $st $(cat "$T/bad.err")"
st=0
"$KEYHOLDD" --socket "$T/x.sock" --identities "$P/ids" --log-format xml 2>"$T/bad2.err" || st=$?
[ "$st" = 2 ] && grep -q "unknown format 'xml' (one of text|json)" "$T/bad2.err" &&
  pass "--log-format xml refused" || fail "--log-format xml: exit $st"
finish

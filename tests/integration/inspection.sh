#!/usr/bin/env bash
# Secure channels through a TLS-inspecting proxy (issue 12, part 2): mitmdump
# as the corporate proxy, its CA trusted by the clients, in front of an HTTPS
# mailbox relay (tools/channel_relay.py).
#   - mTLS through the proxy fails: curl with a client certificate reaches
#     the mTLS-requiring relay directly, but through the inspecting proxy it
#     cannot (the proxy re-terminates TLS and has no client certificate).
#   - A secure channel through the same proxy succeeds: both sides name the
#     verified SPIFFE ID, messages both ways, and mitmproxy's saved flows
#     (which do hold the requests it inspected) contain neither the payload,
#     nor the bearer token sent inside the channel, nor the identities.
. "$(dirname "$0")/lib.sh"
for c in mitmdump curl python3; do
  command -v "$c" >/dev/null || { echo "not ok - $c missing (tools/install-deps.sh installs it)"; exit 1; }
done
RELAY=${CHANNEL_RELAY:-$KH_SOURCE_ROOT/tools/channel_relay.py}
make_pki
P=$T/pki
mkdir -p "$T/a" "$T/b"
cp -r "$P/ids/client" "$T/a/"
cp -r "$P/ids/server" "$T/b/"
start_keyholdd a "$T/a"
start_keyholdd b "$T/b"
ok_or() { if eval "$1"; then pass "$2"; else fail "$2: $3"; fi; }

relay=$(free_port) mtls=$(free_port) mp=$(free_port)
bg python3 "$RELAY" --listen "127.0.0.1:$relay" --cert "$P/peer/server.crt" --key "$P/peer/server.key" \
  2>"$T/relay.log"
wait_for "$T/relay.log" "listening on"
bg python3 "$RELAY" --listen "127.0.0.1:$mtls" --cert "$P/peer/server.crt" --key "$P/peer/server.key" \
  --client-ca "$P/ca/ca.crt" 2>"$T/mtls.log"
wait_for "$T/mtls.log" "listening on"
mkdir -p "$T/mitm"
bg mitmdump --listen-host 127.0.0.1 --listen-port "$mp" --set confdir="$T/mitm" \
  --set ssl_verify_upstream_trusted_ca="$P/ca/ca.crt" -w "$T/flows.mitm" >"$T/mitm.log" 2>&1
MITM=${PIDS[-1]}
for _ in $(seq 200); do
  [ -s "$T/mitm/mitmproxy-ca-cert.pem" ] && ss -ltn | grep -q "127.0.0.1:$mp " && break
  sleep 0.05
done
MCA=$T/mitm/mitmproxy-ca-cert.pem
ok_or '[ -s "$MCA" ]' "mitmdump is up with its own CA" "$(tail -5 "$T/mitm.log")"

# 1. mTLS: direct works, through the inspecting proxy it does not.
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$P/ca/ca.crt" \
  --cert "$P/peer/client.crt" --key "$P/peer/client.key" "https://127.0.0.1:$mtls/box/x" 2>"$T/direct.err")
ok_or '[ "$code" = 204 ]' "mTLS to the relay directly: HTTP 204" "got $code: $(cat "$T/direct.err")"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --proxy "http://127.0.0.1:$mp" \
  --cacert "$MCA" --cert "$P/peer/client.crt" --key "$P/peer/client.key" \
  "https://127.0.0.1:$mtls/box/x" 2>"$T/proxied.err") || true
ok_or '[ "$code" != 204 ] && [ "$code" != 200 ]' \
  "mTLS through the inspecting proxy fails (HTTP $code)" "got $code"

# 2. The secure channel through the same proxy.
SECRET=inspected-secret-$(od -An -N6 -tx1 /dev/urandom | tr -d ' ')
TOKEN=tok$(od -An -N12 -tx1 /dev/urandom | tr -d ' ')
H=(--via "https://127.0.0.1:$relay" --proxy "http://127.0.0.1:$mp" --cacert "$MCA" --timeout 20000)
timeout 30 "$KEYHOLD" channel respond --sidecar "$T/b.sock" "${H[@]}" --box-send r2i --box-recv i2r \
  --expect-peer spiffe://example.org/client --echo --expect 2 2>"$T/resp.err" &
rp=$!
rc_i=0
timeout 30 "$KEYHOLD" channel initiate --sidecar "$T/a.sock" "${H[@]}" --box-send i2r --box-recv r2i \
  --expect-peer spiffe://example.org/server --send "$SECRET" --send "Authorization: Bearer $TOKEN" \
  --expect 2 2>"$T/init.err" || rc_i=$?
rc_r=0
wait "$rp" || rc_r=$?
ok_or '[ $rc_i -eq 0 ] && [ $rc_r -eq 0 ] && grep -q "^channel: .* peer=spiffe://example.org/server" "$T/init.err" && grep -q "^channel: .* peer=spiffe://example.org/client" "$T/resp.err"' \
  "secure channel through the inspecting proxy: both sides verified" "$(cat "$T/init.err" "$T/resp.err")"
ok_or 'grep -qx "message: echo: Authorization: Bearer $TOKEN" "$T/init.err" && grep -qx "message: $SECRET" "$T/resp.err"' \
  "messages both ways, the token inside the channel" "$(cat "$T/init.err")"

# What the proxy kept: mitmdump writes its flows when it stops.
kill -INT "$MITM"
for _ in $(seq 200); do running "$MITM" || break; sleep 0.05; done
ok_or 'grep -aq "/box/i2r" "$T/flows.mitm" && grep -aq "/box/r2i" "$T/flows.mitm"' \
  "mitmproxy inspected the channel's requests (paths in its saved flows)" \
  "flows: $(wc -c <"$T/flows.mitm" 2>/dev/null) bytes"
ok_or '! grep -aq -e "$SECRET" -e "$TOKEN" -e "example.org" "$T/flows.mitm"' \
  "the saved flows hold no payload, no bearer token, no identity" "found in $T/flows.mitm"
finish

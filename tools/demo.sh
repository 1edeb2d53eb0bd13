#!/usr/bin/env bash
# demo.sh [BUILD_DIR]: the live demo. A fresh development PKI, keyholdd
# holding the application's identity, a real TLS 1.3 peer (openssl s_server
# with mutual TLS, reversing each line it receives), and `keyhold connect`
# doing the offloaded mTLS handshake and exchanging data both ways.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
[[ $build = /* ]] || build=$root/$build
tmp=$(mktemp -d /tmp/keyhold-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

wait_for() { # wait_for FILE PATTERN: bounded wait for a line in a log
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

echo "== 1. development CA and identities (keyhold init)"
"$build/tools/keyhold" init "$tmp/pki"
mkdir "$tmp/ids" && cp -r "$tmp/pki/client" "$tmp/ids/"

echo "== 2. keyholdd holds spiffe://example.org/client; the app never sees the key"
"$build/sidecar/keyholdd" --socket "$tmp/keyhold.sock" --identities "$tmp/ids" 2>"$tmp/keyholdd.log" &
pids+=($!)
wait_for "$tmp/keyholdd.log" "listening on"

echo "== 3. a real TLS 1.3 peer: openssl s_server, client certificate required"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkfifo "$tmp/srv.in"
openssl s_server -tls1_3 -Verify 1 -verify_return_error -CAfile "$tmp/pki/ca.crt" \
  -cert "$tmp/pki/server/tls.crt" -key "$tmp/pki/server/tls.key" \
  -accept "127.0.0.1:$port" -rev <"$tmp/srv.in" >"$tmp/s_server.log" 2>&1 &
pids+=($!)
exec 3>"$tmp/srv.in"
wait_for "$tmp/s_server.log" "ACCEPT"

echo "== 4. the app: keyhold connect, offloaded mTLS handshake, data both ways"
msg="hello from an app that holds no private key"
reply=$(printf '%s\n' "$msg" | "$build/tools/keyhold" connect --sidecar "$tmp/keyhold.sock" \
  --expect-peer spiffe://example.org/server "127.0.0.1:$port" 2>"$tmp/connect.log")
exec 3>&-
echo
echo "negotiated:   $(grep 'connected' "$tmp/connect.log" | sed 's/^keyhold: connected //')"
echo "sent:         $msg"
echo "peer replied: $reply"
echo "sidecar log:  $(grep 'handshake side=' "$tmp/keyholdd.log" | sed 's/.* INFO //')"
expected=$(python3 -c 'import sys; print(sys.argv[1][::-1])' "$msg")
if [ "$reply" != "$expected" ]; then
  echo "demo: FAILED: expected the reversed line back" >&2
  cat "$tmp/connect.log" "$tmp/s_server.log" >&2
  exit 1
fi
echo
echo "demo: OK: offloaded mTLS handshake with openssl s_server, data both ways"

#!/usr/bin/env bash
# keyhold serve <-> keyhold connect: through one sidecar holding both
# identities, and through two sidecars each holding one; ALPN negotiated.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd both "$P/ids"
mkdir -p "$T/ids-client" "$T/ids-server"
cp -r "$P/ids/client" "$T/ids-client/"
cp -r "$P/ids/server" "$T/ids-server/"
start_keyholdd kc "$T/ids-client"
start_keyholdd ks "$T/ids-server"

pair() { # pair NAME SERVER_SOCK CLIENT_SOCK [CLIENT_IDENTITY_ARGS...]
  local name=$1 ssock=$2 csock=$3
  shift 3
  start_serve "srv-$name" --sidecar "$ssock" --identity spiffe://example.org/server --echo \
    --alpn h2 --alpn http/1.1 --expect-peer spiffe://example.org/client
  printf 'ping %s\n' "$name" | timeout 10 "$KEYHOLD" connect --sidecar "$csock" "$@" \
    --expect-peer spiffe://example.org/server --alpn http/1.1 --alpn h2 "127.0.0.1:$PORT" \
    >"$T/$name.out" 2>"$T/$name.err" || true
  grep -q "^ping $name" "$T/$name.out" && pass "$name: data echoed keyhold <-> keyhold" || fail "$name: echo ($(cat "$T/$name.err"))"
  grep -q "alpn=h2 peer=spiffe://example.org/server local=spiffe://example.org/client" "$T/$name.err" \
    && pass "$name: ALPN h2 (server preference) and identities" || fail "$name: $(cat "$T/$name.err")"
  wait_for "$T/srv-$name.log" "accepted .* alpn=h2 peer=spiffe://example.org/client" && pass "$name: server side saw the client" || fail "$name: server line"
}
pair one-sidecar "$T/both.sock" "$T/both.sock" --identity spiffe://example.org/client
pair two-sidecars "$T/ks.sock" "$T/kc.sock"
# Many concurrent handshakes through one sidecar and one server.
start_serve many --sidecar "$T/both.sock" --identity spiffe://example.org/server --echo
pids=()
for i in $(seq 20); do
  (printf 'client %s\n' "$i" | timeout 20 "$KEYHOLD" connect --sidecar "$T/both.sock" \
    --identity spiffe://example.org/client "127.0.0.1:$PORT" >"$T/many.$i.out" 2>"$T/many.$i.err") &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
ok=0
for i in $(seq 20); do grep -qx "client $i" "$T/many.$i.out" && ok=$((ok + 1)); done
[ "$ok" -eq 20 ] && pass "20 concurrent offloaded handshakes all echoed" || fail "only $ok of 20 concurrent clients succeeded"
finish

#!/usr/bin/env bash
# gnutls-serv <-> keyhold connect, and gnutls-cli <-> keyhold serve.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"

# 1. gnutls-serv (echo, client certificate required) <-> keyhold connect.
port=$(free_port)
bg gnutls-serv --echo --port "$port" --x509certfile "$P/peer/server.crt" --x509keyfile "$P/peer/server.key" \
  --x509cafile "$P/ca/ca.crt" --require-client-cert --verify-client-cert \
  --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' >"$T/gs.out" 2>&1
wait_for "$T/gs.out" "listening"
mkfifo "$T/k.in"
exec 5<>"$T/k.in"
bg "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --expect-peer spiffe://example.org/peer-server "127.0.0.1:$port" <"$T/k.in" >"$T/k.out" 2>"$T/k.err"
wait_for "$T/k.err" "connected TLSv1.3" && pass "keyhold connect -> gnutls-serv: handshake" || fail "gnutls-serv handshake"
echo "gnutls echo line" >&5
wait_for "$T/k.out" "^gnutls echo line" && pass "keyhold connect -> gnutls-serv: data echoed" || fail "gnutls-serv echo"
exec 5>&-

# 2. gnutls-cli (client certificate) <-> keyhold serve --echo.
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo
mkfifo "$T/g.in"
exec 6<>"$T/g.in"
bg gnutls-cli --x509cafile "$P/ca/ca.crt" --x509certfile "$P/peer/client.crt" --x509keyfile "$P/peer/client.key" \
  --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' -p "$PORT" localhost <"$T/g.in" >"$T/g.out" 2>&1
wait_for "$T/g.out" "Handshake was completed" && pass "gnutls-cli -> keyhold serve: handshake" || fail "gnutls-cli handshake"
echo "from gnutls-cli" >&6
wait_for "$T/g.out" "^from gnutls-cli" && pass "gnutls-cli -> keyhold serve: data echoed" || fail "gnutls-cli echo"
wait_for "$T/serve.log" "accepted .* peer=spiffe://example.org/peer-client" && pass "keyhold serve saw the gnutls client identity" || fail "serve line"
exec 6>&-
finish

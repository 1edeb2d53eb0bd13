#!/usr/bin/env bash
# openssl s_client and curl --cert <-> keyhold serve --echo (offloaded server side).
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo --alpn http/1.1

# openssl s_client: mTLS with the test CA; the line comes back.
mkfifo "$T/c.in"
exec 5<>"$T/c.in"
bg openssl s_client -tls1_3 -quiet -connect "127.0.0.1:$PORT" -servername localhost \
  -verify_return_error -CAfile "$P/ca/ca.crt" -cert "$P/peer/client.crt" -key "$P/peer/client.key" \
  <"$T/c.in" >"$T/c.out" 2>"$T/c.err"
echo "echo me please" >&5
wait_for "$T/c.out" "^echo me please" && pass "s_client: data echoed through keyhold serve" || fail "s_client echo"
wait_for "$T/serve.log" "accepted .* TLSv1.3 .* peer=spiffe://example.org/peer-client local=spiffe://example.org/server" \
  && pass "serve: reported peer and local identity" || fail "serve: accepted line"
echo "second line" >&5
wait_for "$T/c.out" "^second line" && pass "s_client: second line echoed" || fail "s_client second line"
exec 5>&-

# curl: TLS 1.3 with a client certificate; the echoed request comes back (HTTP/0.9 body).
curl -sv --http0.9 --max-time 3 --tlsv1.3 --cacert "$P/ca/ca.crt" --cert "$P/peer/client.crt" \
  --key "$P/peer/client.key" "https://localhost:$PORT/probe-path" >"$T/curl.out" 2>"$T/curl.err" || true
grep -q "SSL connection using TLSv1.3" "$T/curl.err" && pass "curl: TLS 1.3 handshake with keyhold serve" || fail "curl handshake: $(tail -3 "$T/curl.err")"
grep -q "ALPN: server accepted http/1.1\|ALPN, server accepted to use http/1.1" "$T/curl.err" && pass "curl: ALPN http/1.1 negotiated" || fail "curl ALPN"
grep -q "GET /probe-path HTTP/1.1" "$T/curl.out" && pass "curl: request echoed back" || fail "curl echo: $(head -c 200 "$T/curl.out")"

# curl without a client certificate is refused: mTLS always.
curl -s --max-time 3 --tlsv1.3 --cacert "$P/ca/ca.crt" "https://localhost:$PORT/" >/dev/null 2>"$T/curl2.err" \
  && fail "curl without a client certificate was accepted" || pass "curl without a client certificate refused"
wait_for "$T/serve.log" "client .* failed: sidecar: .*(certificate|CERTIFICATE)" && pass "serve: logged the refusal with a reason" || fail "serve: no refusal logged"
# and the server keeps serving
curl -s --http0.9 --max-time 3 --cacert "$P/ca/ca.crt" --cert "$P/peer/client.crt" --key "$P/peer/client.key" \
  "https://localhost:$PORT/again" >"$T/curl3.out" 2>/dev/null || true
grep -q "GET /again" "$T/curl3.out" && pass "serve: still serving after a failed client" || fail "serve stopped serving"
finish

#!/usr/bin/env bash
# nginx with ssl_verify_client on <-> keyhold connect: HTTP GET, 200.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"
start_nginx "hello from nginx over offloaded mTLS"
port=$nport

printf 'GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
  timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
    --alpn http/1.1 "localhost:$port" >"$T/resp" 2>"$T/err" || true
grep -q "HTTP/1.1 200 OK" "$T/resp" && pass "nginx: 200 OK over offloaded mTLS" || fail "nginx status: $(head -1 "$T/resp") $(cat "$T/err")"
grep -q "hello from nginx over offloaded mTLS" "$T/resp" && pass "nginx: body received" || fail "nginx body"
grep -qi "X-Client-Verify: SUCCESS" "$T/resp" && pass "nginx verified our client certificate" || fail "nginx client verify header"
grep -q "connected TLSv1.3 .* alpn=http/1.1 peer=spiffe://example.org/peer-server" "$T/err" && pass "keyhold: TLS 1.3, ALPN http/1.1, peer identity" || fail "connect line: $(cat "$T/err")"

# nginx refuses a client whose certificate comes from another CA.
mkdir -p "$T/rogue-ids/client"
cp "$P/rogue/client.crt" "$T/rogue-ids/client/tls.crt"
cp "$P/rogue/client.key" "$T/rogue-ids/client/tls.key"
cp "$P/ca/ca.crt" "$T/rogue-ids/client/ca.crt"
start_keyholdd rogue "$T/rogue-ids"
printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
  timeout 10 "$KEYHOLD" connect --sidecar "$T/rogue.sock" "localhost:$port" >"$T/resp2" 2>"$T/err2" || true
if grep -q "200 OK" "$T/resp2"; then fail "nginx accepted a rogue client certificate"; else pass "nginx refused a client certificate from another CA"; fi
# nginx finishes the TLS 1.3 handshake and answers 400 "SSL certificate error".
grep -q "400 Bad Request" "$T/resp2" && grep -q "SSL certificate error" "$T/resp2" \
  && pass "nginx answered 400 'SSL certificate error'" || fail "nginx refusal: $(head -c 300 "$T/resp2") $(cat "$T/err2")"
finish

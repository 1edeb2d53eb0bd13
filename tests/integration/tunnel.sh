#!/usr/bin/env bash
# keyhold tunnel: curl -> tunnel client -> nginx (ssl_verify_client on);
# openssl s_client -> tunnel server -> plain HTTP backend; concurrency;
# half-close in both directions; argument errors, wrong peers, --max-conns.
. "$(dirname "$0")/lib.sh"
command -v nginx >/dev/null || { echo "nginx missing: run tools/install-deps.sh"; exit 1; }
command -v curl >/dev/null || { echo "curl missing: run tools/install-deps.sh"; exit 1; }
make_pki
P=$T/pki
start_keyholdd kd "$P/ids" # spiffe://example.org/client and spiffe://example.org/server
CLIENT=spiffe://example.org/client
SERVER=spiffe://example.org/server

# start_tunnel NAME ARGS...: keyhold tunnel on 127.0.0.1:0, log $T/NAME.log; sets TPORT.
start_tunnel() {
  local name=$1
  shift
  bg "$KEYHOLD" tunnel "$@" --sidecar "$T/kd.sock" --listen 127.0.0.1:0 2>"$T/$name.log"
  wait_for "$T/$name.log" "tunnel listening on"
  TPORT=$(sed -n 's/.*tunnel listening on .*:\([0-9]*\)$/\1/p' "$T/$name.log" | head -1)
  TPID=${PIDS[-1]}
}
fds() { ls "/proc/$1/fd" | wc -l; }
threads() { ls "/proc/$1/task" | wc -l; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# Helpers for half-close: backends and a plaintext client (python3).
cat >"$T/hc.py" <<'PY'
import hashlib, socket, socketserver, sys, threading
def read_all(s):
    out = b""
    while True:
        b = s.recv(65536)
        if not b: return out
        out += b
mode = sys.argv[1]
if mode.startswith("backend"):
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            s = self.request
            if mode == "backend-eof":  # the answer only after the client's EOF
                data = read_all(s)
                s.sendall(b"got %d sha256 %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()))
            else:  # backend-first: greet, end our side, then count what still comes
                s.sendall(b"hello, then EOF\n")
                s.shutdown(socket.SHUT_WR)
                data = read_all(s)
                open(sys.argv[3], "w").write("got %d sha256 %s\n" % (len(data), hashlib.sha256(data).hexdigest()))
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
    open(sys.argv[2], "w").write("%d\n" % srv.server_address[1])
    srv.serve_forever()
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10)
data = open(sys.argv[3], "rb").read()
if mode == "client-eof":  # send everything, end our side, then read the answer
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    sys.stdout.write(read_all(s).decode())
else:  # client-first: read until the server's EOF, then send, then end
    sys.stdout.write(read_all(s).decode())
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    read_all(s)
PY
head -c 300000 /dev/urandom >"$T/big"
BIG="got 300000 sha256 $(sha256sum "$T/big" | cut -d' ' -f1)"

# --- nginx requiring a client certificate from the test CA -----------------
start_nginx "hello from nginx through keyhold tunnel"

# 1. curl -> tunnel client -> nginx.
start_tunnel tc client --target "localhost:$nport" --identity "$CLIENT" \
  --expect-peer spiffe://example.org/peer-server --alpn http/1.1
CPORT=$TPORT
CPID=$TPID
curl -sS --max-time 10 -D "$T/c1.h" "http://127.0.0.1:$CPORT/index.html?one" >"$T/c1.out" 2>"$T/c1.err" || true
grep -q "hello from nginx through keyhold tunnel" "$T/c1.out" && pass "client tunnel: curl got the page from nginx" || fail "client tunnel: $(cat "$T/c1.err" "$T/tc.log")"
grep -qi "X-Client-Verify: SUCCESS" "$T/c1.h" && pass "client tunnel: nginx verified the client certificate" || fail "client verify header: $(cat "$T/c1.h")"
grep -q '^SUCCESS "CN=client" 200 /index.html?one' "$T/nginx/logs/access.log" \
  && pass "client tunnel: nginx access log shows SUCCESS and CN=client" || fail "access log: $(cat "$T/nginx/logs/access.log")"
grep -q "open peer=spiffe://example.org/peer-server TLSv1.3 TLS_.* alpn=http/1.1 local=$CLIENT" "$T/tc.log" \
  && pass "client tunnel: open line names peer, version, cipher" || fail "open line: $(cat "$T/tc.log")"
wait_for "$T/tc.log" "#1 .* closed: [0-9]+ bytes app->peer, [1-9][0-9]* bytes peer->app, [0-9]+ ms, " \
  && pass "client tunnel: close line with bytes, duration and reason" || fail "close line"

# 3. Eight concurrent curls through the same tunnel.
fds0=$(fds "$CPID") threads0=$(threads "$CPID")
pids=()
for i in $(seq 8); do
  curl -sS --max-time 20 "http://127.0.0.1:$CPORT/index.html?par$i" >"$T/par.$i.out" 2>"$T/par.$i.err" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
ok=0
for i in $(seq 8); do grep -q "hello from nginx" "$T/par.$i.out" && ok=$((ok + 1)); done
[ "$ok" -eq 8 ] && pass "client tunnel: 8 concurrent curls all got the page" || fail "only $ok of 8 concurrent curls succeeded: $(cat "$T"/par.*.err)"
[ "$(grep -c '^SUCCESS "CN=client" 200 /index.html?par' "$T/nginx/logs/access.log")" -eq 8 ] \
  && pass "client tunnel: nginx logged 8 verified requests" || fail "access log: $(cat "$T/nginx/logs/access.log")"
for _ in $(seq 100); do [ "$(grep -c ' closed: ' "$T/tc.log")" -ge 9 ] && break; sleep 0.05; done
sleep 0.2 # the threads end right after their close line
# gRPC may grow its own pool by a thread or two; 8 left-over connection threads would show.
[ "$(fds "$CPID")" -eq "$fds0" ] && [ "$(threads "$CPID")" -le $((threads0 + 2)) ] \
  && pass "client tunnel: back to $fds0 fds, no connection thread left after they closed" \
  || fail "fds $fds0 -> $(fds "$CPID"), threads $threads0 -> $(threads "$CPID")"

# 2. openssl s_client (client certificate) -> tunnel server -> python http.server.
hport=$(free_port)
echo "plain backend body" >"$T/www/file.txt"
bg python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$hport" >"$T/http.log" 2>&1
wait_port "$hport"
start_tunnel ts server --target "127.0.0.1:$hport" --identity "$SERVER" \
  --expect-peer spiffe://example.org/peer-client --expect-peer "$CLIENT"
SPORT=$TPORT
s_client() { # s_client CERTNAME OUT: GET /file.txt through the server tunnel
  printf 'GET /file.txt HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$T/req"
  timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername localhost -quiet \
    -cert "$P/peer/$2.crt" -key "$P/peer/$2.key" -CAfile "$P/ca/ca.crt" -verify_return_error \
    <"$T/req" >"$T/$3.out" 2>"$T/$3.err" || true
}
s_client "$SPORT" client s1
grep -q "plain backend body" "$T/s1.out" && pass "server tunnel: s_client got the backend's body" || fail "server tunnel: $(cat "$T/s1.err" "$T/ts.log")"
grep -q "open peer=spiffe://example.org/peer-client TLSv1.3 TLS_" "$T/ts.log" \
  && pass "server tunnel: open line names the client's identity" || fail "open line: $(cat "$T/ts.log")"
# s_client's request often comes in the same segment as its Finished: it is
# then in the shim, not in the socket, when the handshake returns.
ok=0
for i in $(seq 10); do
  printf 'GET /file.txt HTTP/1.0\r\nHost: localhost\r\n\r\n' |
    timeout 5 openssl s_client -connect "127.0.0.1:$SPORT" -quiet -cert "$P/peer/client.crt" \
      -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" 2>/dev/null | grep -q "plain backend body" && ok=$((ok + 1))
done
[ "$ok" -eq 10 ] && pass "server tunnel: 10 s_client requests answered at once" || fail "only $ok of 10 s_client requests answered within 5 s"

# 4. Half-close. (a) keyhold connect sends a file, then close_notify, and
# reads on; the backend answers only after EOF: only a tunnel that turns the
# close_notify into shutdown(SHUT_WR) and keeps the reply path open works.
python3 "$T/hc.py" backend-eof "$T/eof.port" &
PIDS+=($!)
wait_for "$T/eof.port" "[0-9]"
start_tunnel ts2 server --target "127.0.0.1:$(cat "$T/eof.port")" --identity "$SERVER" --expect-peer "$CLIENT"
S2PORT=$TPORT
timeout 15 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity "$CLIENT" --expect-peer "$SERVER" \
  "127.0.0.1:$S2PORT" <"$T/big" >"$T/h1.out" 2>"$T/h1.err" || true
[ "$(cat "$T/h1.out")" = "$BIG" ] && pass "half-close: close_notify -> backend EOF -> full answer (server tunnel)" \
  || fail "half-close server: $(cat "$T/h1.out" "$T/h1.err" "$T/ts2.log")"
wait_for "$T/ts2.log" "closed: 83 bytes app->peer, 300000 bytes peer->app, [0-9]+ ms, peer closed first" \
  && pass "half-close: server tunnel counted both directions, peer closed first" || fail "ts2 close line: $(cat "$T/ts2.log")"
# (b) plaintext shutdown(SHUT_WR) -> client tunnel -> server tunnel -> backend.
start_tunnel tc2 client --target "127.0.0.1:$S2PORT" --identity "$CLIENT" --expect-peer "$SERVER"
C2PORT=$TPORT
timeout 15 python3 "$T/hc.py" client-eof "$C2PORT" "$T/big" >"$T/h2.out" 2>"$T/h2.err" || true
[ "$(cat "$T/h2.out")" = "$BIG" ] && pass "half-close: app SHUT_WR -> client tunnel -> server tunnel -> full answer" \
  || fail "half-close chain: $(cat "$T/h2.out" "$T/h2.err" "$T/tc2.log")"
# (c) the backend ends first: the client reads to EOF, then still sends.
python3 "$T/hc.py" backend-first "$T/first.port" "$T/first.got" &
PIDS+=($!)
wait_for "$T/first.port" "[0-9]"
start_tunnel ts3 server --target "127.0.0.1:$(cat "$T/first.port")" --identity "$SERVER" --expect-peer "$CLIENT"
start_tunnel tc3 client --target "127.0.0.1:$TPORT" --identity "$CLIENT" --expect-peer "$SERVER"
timeout 15 python3 "$T/hc.py" client-first "$TPORT" "$T/big" >"$T/h3.out" 2>"$T/h3.err" || true
wait_for "$T/first.got" "got" 5 || true
[ "$(cat "$T/h3.out")" = "hello, then EOF" ] && [ "$(cat "$T/first.got" 2>/dev/null)" = "$BIG" ] \
  && pass "half-close: backend EOF first, client's data still delivered after it" \
  || fail "half-close reverse: $(cat "$T/h3.out" "$T/h3.err" "$T/first.got" "$T/tc3.log" "$T/ts3.log" 2>&1)"

# 5. Negatives.
"$KEYHOLD" tunnel client --sidecar "$T/kd.sock" --listen 127.0.0.1:0 2>"$T/n1.err" && st=0 || st=$?
[ "$st" -eq 2 ] && grep -q "keyhold tunnel: --target is required" "$T/n1.err" \
  && pass "missing --target: exit 2, named" || fail "missing --target: $st $(cat "$T/n1.err")"
"$KEYHOLD" tunnel client --sidecar "$T/kd.sock" --listen 127.0.0.1:0 --target 127.0.0.1:1 --max-conns abc \
  2>"$T/n2.err" && st=0 || st=$?
[ "$st" -ne 0 ] && grep -q -- "--max-conns 'abc'" "$T/n2.err" && pass "--max-conns abc refused" || fail "--max-conns abc: $st $(cat "$T/n2.err")"
"$KEYHOLD" tunnel client --sidecar "$T/kd.sock" --listen 0.0.0.0:0 --target 127.0.0.1:1 2>"$T/n3.err" && st=0 || st=$?
[ "$st" -eq 2 ] && grep -q -- "--listen 0.0.0.0:0 is not a loopback address.*--allow-remote" "$T/n3.err" \
  && pass "client tunnel refuses a non-loopback --listen without --allow-remote" || fail "non-loopback listen: $st $(cat "$T/n3.err")"
"$KEYHOLD" tunnel server --sidecar "$T/kd.sock" --listen 127.0.0.1:0 --bogus 2>"$T/n4.err" && st=0 || st=$?
[ "$st" -eq 2 ] && grep -q "usage:" "$T/n4.err" && pass "unknown option: exit 2 with usage" || fail "unknown option: $st"
"$KEYHOLD" tunnel --help >"$T/n5.out" 2>&1 && grep -q "keyhold tunnel client" "$T/n5.out" \
  && pass "--help prints the usage, exit 0" || fail "--help"
# A client identity the server tunnel does not expect: closed, reason logged, next one served.
start_tunnel strict server --target "127.0.0.1:$hport" --identity "$SERVER" --expect-peer spiffe://example.org/peer-client
echo x | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity "$CLIENT" --expect-peer "$SERVER" \
  "127.0.0.1:$TPORT" >"$T/w1.out" 2>"$T/w1.err" && fail "unexpected client identity got through" \
  || pass "server tunnel closed a client with an unexpected identity"
wait_for "$T/strict.log" "#1 .* handshake failed: .*$CLIENT is not one of the 1 expected peers \[PERMISSION_DENIED\]" \
  && pass "server tunnel log names the unexpected peer" || fail "strict log"
s_client "$TPORT" client w2
grep -q "plain backend body" "$T/w2.out" && pass "server tunnel served the next (expected) client" || fail "after refusal: $(cat "$T/w2.err" "$T/strict.log")"
# The client tunnel with a wrong --expect-peer: curl gets nothing, the log says why.
start_tunnel wrong client --target "localhost:$nport" --identity "$CLIENT" --expect-peer spiffe://example.org/billing
curl -sS --max-time 10 "http://127.0.0.1:$TPORT/" >"$T/w3.out" 2>"$T/w3.err" && fail "curl got through a wrong --expect-peer" \
  || pass "client tunnel closed the connection to an unexpected server"
wait_for "$T/wrong.log" "handshake failed: .*peer-server is not one of the 1 expected peers" \
  && pass "client tunnel log names the unexpected server" || fail "wrong log: $(cat "$T/wrong.log")"
# --max-conns 1: a second connection while one is open is closed at once.
start_tunnel cap client --target "localhost:$nport" --identity "$CLIENT" --expect-peer spiffe://example.org/peer-server --max-conns 1
exec 5<>"/dev/tcp/127.0.0.1/$TPORT"
wait_for "$T/cap.log" "#1 .* open peer="
curl -sS --max-time 10 "http://127.0.0.1:$TPORT/" >"$T/cap.out" 2>"$T/cap.err" && fail "--max-conns 1 let a second connection in" \
  || pass "--max-conns 1: second connection closed"
grep -q "#2 .* refused: --max-conns 1 reached" "$T/cap.log" && pass "--max-conns refusal logged" || fail "cap log: $(cat "$T/cap.log")"
exec 5>&-
wait_for "$T/cap.log" "#1 .* closed:"
curl -sS --max-time 10 "http://127.0.0.1:$TPORT/index.html" >"$T/cap2.out" 2>"$T/cap2.err" || true
grep -q "hello from nginx" "$T/cap2.out" && pass "--max-conns: a slot frees when a connection ends" || fail "cap after close: $(cat "$T/cap2.err" "$T/cap.log")"
finish

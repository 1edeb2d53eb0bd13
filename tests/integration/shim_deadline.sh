#!/usr/bin/env bash
# The shim follows the sidecar while it waits on a stalled peer (finding 6):
# keyholdd ends a handshake stream at its deadline (--handshake-timeout-ms
# 2000) long before the app's own (--timeout 30000); the shim must notice at
# once and fail with the sidecar's DEADLINE_EXCEEDED and its message, on the
# client and on the server side, instead of waiting 30 s and blaming the
# peer. Likewise a keyholdd SIGKILLed mid-handshake is reported as
# "sidecar unavailable" promptly.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
now_ms() { echo $(($(date +%s%N) / 1000000)); }

bg "$KEYHOLDD" --socket "$T/kd.sock" --identities "$P/ids" --handshake-timeout-ms 2000 2>"$T/kd.log"
KD_PIDS+=("${PIDS[-1]}")
KD_LOGS+=("$T/kd.log")
wait_for "$T/kd.log" "listening on"

# A TLS server that accepts, reads what it gets and never answers (60 s at most).
port=$(free_port)
python3 -u - "$port" >"$T/peer.out" 2>&1 <<'PY' &
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
s.settimeout(60)
print("ready", flush=True)
def hold(c, k):
    c.settimeout(60)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            print("conn %d got %d bytes" % (k, len(b)), flush=True)
    except OSError:
        pass
k = 0
end = time.time() + 60
try:
    while time.time() < end:
        c, _ = s.accept()
        k += 1
        threading.Thread(target=hold, args=(c, k), daemon=True).start()
except OSError:
    pass
PY
PIDS+=($!)
wait_for "$T/peer.out" ready

# connect SOCK ERRFILE [ARGS...]: keyhold connect to the stalled peer through
# SOCK, at most 35 s; stderr to ERRFILE; sets ms.
connect() {
  local sock=$1 err=$2
  shift 2
  local t0
  t0=$(now_ms)
  timeout 35 "$KEYHOLD" connect --sidecar "$sock" --identity spiffe://example.org/client \
    --timeout 30000 "$@" "127.0.0.1:$port" </dev/null >/dev/null 2>"$err" && echo "connect succeeded" >>"$err"
  ms=$(($(now_ms) - t0))
}

# 1. Client side: the sidecar's deadline, not the peer's.
connect "$T/kd.sock" "$T/client.err"
msg=$(tail -1 "$T/client.err")
grep -q "sidecar: handshake did not finish within 2000 ms \[DEADLINE_EXCEEDED\]" "$T/client.err" \
  && pass "client: the sidecar's status is reported: $msg" || fail "client: wrong error: $msg"
[ "$ms" -lt 4000 ] && pass "client: failed after ${ms} ms (sidecar deadline 2000 ms, app's 30000 ms)" \
  || fail "client: failed only after ${ms} ms (sidecar deadline 2000 ms)"
grep -q "peer did not answer" "$T/client.err" && fail "client: the peer was blamed" || pass "client: the peer is not blamed"

# 2. Server side: a TCP client sends half a ClientHello and stalls.
start_serve app --sidecar "$T/kd.sock" --identity spiffe://example.org/server --timeout 30000
partial_client() { # partial_client LOG: half a ClientHello to $PORT, then silence (40 s at most)
  python3 -u - "$PORT" >"$1" 2>&1 <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]))
print("sent", flush=True)
time.sleep(40)
PY
  PIDS+=($!)
  wait_for "$1" sent
}
t0=$(now_ms)
partial_client "$T/partial.out"
if wait_for "$T/app.log" "client .* failed: " 10; then
  ms=$(($(now_ms) - t0))
  msg=$(grep "failed: " "$T/app.log" | tail -1)
  grep -q "client .* failed: sidecar: handshake did not finish within 2000 ms \[DEADLINE_EXCEEDED\]" "$T/app.log" \
    && pass "server: the sidecar's status is logged: $msg" || fail "server: wrong error: $msg"
  [ "$ms" -lt 4000 ] && pass "server: failed after ${ms} ms (sidecar deadline 2000 ms)" \
    || fail "server: failed only after ${ms} ms"
else
  fail "server: nothing logged within 10 s (app's timeout 30000 ms)"
fi

# 3. keyholdd SIGKILLed while the shim waits on the stalled peer: client side.
start_keyholdd kd2 "$P/ids"
kd2=${PIDS[-1]}
n0=$(grep -c " got " "$T/peer.out" || true)
connect "$T/kd2.sock" "$T/abandoned.err" &
PIDS+=($!)
cpid=$!
# The ClientHello reached the peer: the shim now waits on it.
for _ in $(seq 100); do [ "$(grep -c " got " "$T/peer.out" || true)" -gt "$n0" ] && break; sleep 0.05; done
kill -KILL "$kd2"
wait "$kd2" 2>/dev/null || true
t1=$(now_ms)
wait "$cpid" || true
ms=$(($(now_ms) - t1))
msg=$(tail -1 "$T/abandoned.err")
grep -q "sidecar unavailable at .*\[UNAVAILABLE\]" "$T/abandoned.err" \
  && pass "abandoned (client): reported as $msg" || fail "abandoned (client): wrong error: $msg"
[ "$ms" -lt 3000 ] && pass "abandoned (client): failed ${ms} ms after the SIGKILL" \
  || fail "abandoned (client): failed only ${ms} ms after the SIGKILL"

# 4. The same on the server side (a fresh keyholdd and keyhold serve).
start_keyholdd kd3 "$P/ids"
kd3=${PIDS[-1]}
start_serve app3 --sidecar "$T/kd3.sock" --identity spiffe://example.org/server --timeout 30000
partial_client "$T/partial3.out"
sleep 0.5 # the shim has sent server_start and waits for the rest of the ClientHello
kill -KILL "$kd3"
wait "$kd3" 2>/dev/null || true
t1=$(now_ms)
if wait_for "$T/app3.log" "client .* failed: " 10; then
  ms=$(($(now_ms) - t1))
  msg=$(grep "failed: " "$T/app3.log" | tail -1)
  grep -q "client .* failed: sidecar unavailable at .*\[UNAVAILABLE\]" "$T/app3.log" \
    && pass "abandoned (server): logged as $msg" || fail "abandoned (server): wrong error: $msg"
  [ "$ms" -lt 3000 ] && pass "abandoned (server): failed ${ms} ms after the SIGKILL" \
    || fail "abandoned (server): failed only ${ms} ms after the SIGKILL"
else
  fail "abandoned (server): nothing logged within 10 s of the SIGKILL"
fi
finish

#!/usr/bin/env bash
# Restart on the same socket path, as a supervisor does (reliability finding
# 2): keyholdd A is stopped with SIGTERM while a handshake is in flight, and a
# successor B is started on the same path while A is still draining. A must
# not remove B's socket file when it exits; B keeps serving; the socket file
# is always B's once B listens. A successor started while A still serves
# waits for A's lock instead of taking the path from under it.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_rev_server

inode() { stat -c %i "$T/kd.sock" 2>/dev/null || echo none; }

bg "$KEYHOLDD" --socket "$T/kd.sock" --identities "$P/ids" 2>"$T/a.log"
A=${PIDS[-1]}
wait_for "$T/a.log" "listening on"
rev_handshake a1 && pass "A serves" || fail "A: $(cat "$T/a1.err")"

# A handshake in flight on A: the peer never answers.
python3 - "$T/stall.port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
c, _ = s.accept(); time.sleep(20)
PY
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/stall.port" ] && break; sleep 0.05; done
bg timeout 20 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --timeout 15000 "127.0.0.1:$(cat "$T/stall.port")" 2>"$T/stalled.err" </dev/null
sleep 0.5
sleep 0.3

# A successor while A still serves waits for A's lock (up to 10 s, then fails).
B0_START=$(date +%s)
"$KEYHOLDD" --socket "$T/kd.sock" --identities "$P/ids" 2>"$T/b0.log" &
B0=$!
sleep 1
kill -0 "$B0" 2>/dev/null && grep -q "waiting for the keyholdd holding $T/kd.sock.lock" "$T/b0.log" \
  && pass "a second keyholdd waits for the first one's lock" || fail "b0: $(cat "$T/b0.log")"
kill "$B0" 2>/dev/null || true; wait "$B0" 2>/dev/null || true
rev_handshake a2 && pass "A still serves (the waiting successor took nothing)" || fail "A after b0: $(cat "$T/a2.err")"

# SIGTERM A; freeze it once it has stopped accepting, so its exit comes after
# B has bound the path (the supervisor race, made deterministic).
kill -TERM "$A"
wait_for "$T/a.log" "shutting down" 5 || true
kill -STOP "$A"
bg "$KEYHOLDD" --socket "$T/kd.sock" --identities "$P/ids" 2>"$T/b.log"
B=${PIDS[-1]}
KD_PIDS+=("$B")
KD_LOGS+=("$T/b.log")
wait_for "$T/b.log" "listening on" 15 && pass "B starts while A drains" || fail "B did not start"
ino_b=$(inode)
kill -CONT "$A"
st=0
for _ in $(seq 200); do running "$A" || break; sleep 0.05; done
wait "$A" 2>/dev/null || st=$?
[ "$st" -eq 0 ] && pass "A exits 0" || fail "A exited $st"
[ "$(inode)" = "$ino_b" ] && pass "the socket file is still B's after A exited (inode $ino_b)" \
  || fail "socket file after A exited: $(inode) (B's was $ino_b); A's log: $(tail -3 "$T/a.log")"
rev_handshake b1 && pass "B serves after A exited" || fail "B: $(cat "$T/b1.err")"
grep -q "result=OK" "$T/b.log" && pass "the rev_handshake went through B" || fail "B's log has no handshake"
finish

#!/usr/bin/env bash
# systemd integration: readiness (sd_notify READY=1 reaches $NOTIFY_SOCKET
# once keyholdd serves, as Type=notify expects) and socket activation
# (systemd-socket-activate hands keyholdd a listening socket: it serves on
# it, leaves the file in place at exit, and refuses a --socket that names
# another path).
source "$(dirname "$0")/lib.sh"
command -v systemd-socket-activate >/dev/null || { echo "not ok - systemd-socket-activate missing"; exit 1; }
make_pki
P=$T/pki

# --- readiness ---------------------------------------------------------------
/usr/bin/python3 - "$T/notify.sock" >"$T/notify.out" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
print("bound", flush=True)
msg = s.recv(4096).decode()
print(msg.replace("\n", " "), flush=True)
PY
PIDS+=($!)
wait_for "$T/notify.out" bound
NOTIFY_SOCKET=$T/notify.sock start_keyholdd kd "$P/ids"
wait_for "$T/notify.out" "READY=1" 10 && pass "READY=1 sent to NOTIFY_SOCKET" ||
  fail "no readiness notification: $(cat "$T/notify.out")"
grep -q "STATUS=serving" "$T/notify.out" && pass "STATUS=serving with it" || fail "no STATUS"
"$KEYHOLD" health --sidecar "$T/kd.sock" >/dev/null && pass "serving when READY arrived" ||
  fail "not serving after READY"

# --- socket activation -------------------------------------------------------
bg systemd-socket-activate -l "$T/act.sock" "$KEYHOLDD" --identities "$P/ids" 2>"$T/act.log"
ACT=${PIDS[-1]}
wait_for "$T/act.log" "Listening on $T/act.sock"
out=$("$KEYHOLD" health --sidecar "$T/act.sock" --timeout 10000) && [ "$out" = SERVING ] &&
  pass "the first connection starts keyholdd on systemd's socket and is answered" ||
  fail "activated health: '$out' $(cat "$T/act.log")"
grep -q "socket $T/act.sock from systemd (socket activation)" "$T/act.log" &&
  pass "keyholdd says the socket is systemd's" || fail "no activation log line"
start_rev_server
echo hi | timeout 10 "$KEYHOLD" connect --sidecar "$T/act.sock" --identity spiffe://example.org/client \
  "127.0.0.1:$port" 2>"$T/act-conn.err" | grep -q ih && pass "handshake over the activated socket" ||
  fail "handshake: $(cat "$T/act-conn.err")"
kill -TERM "$ACT"
st=0
for _ in $(seq 100); do running "$ACT" || break; sleep 0.05; done
wait "$ACT" || st=$?
[ "$st" = 0 ] && pass "activated keyholdd exits 0 on SIGTERM" || fail "exit $st"
[ -S "$T/act.sock" ] && grep -q "left to systemd" "$T/act.log" && pass "the socket file stays systemd's" ||
  fail "socket file gone or no log line"

bg systemd-socket-activate -l "$T/b.sock" "$KEYHOLDD" --socket "$T/other.sock" --identities "$P/ids" \
  2>"$T/b.log"
wait_for "$T/b.log" "Listening on"
"$KEYHOLD" health --sidecar "$T/b.sock" --timeout 3000 >/dev/null 2>&1 && fail "mismatched socket served"
wait_for "$T/b.log" "ListenStream= and --socket must agree" 10 &&
  pass "a --socket other than the activated one is refused" || fail "mismatch not refused"
finish

#!/usr/bin/env bash
# The public sans-IO session API (keyhold.h's kh_session_*), driven by
# tests/tools/session_client.c from its own poll loop over its own
# non-blocking socket (no fd handed to libkeyhold) against openssl s_server:
# the handshake fed in pieces of at most 300 bytes (partial records: WANT_READ
# steps), the output written 100 bytes at a time, the answer fed one byte at
# a time; the peer's session tickets are queued by reading and reach keyholdd
# only on kh_session_flush_tickets, at most 8 of them; the next session
# resumes with them; a
# peer that is not the expected one fails the handshake with the sidecar's
# reason. Server side: session_client --serve (ClientHello fed in 50-byte
# pieces) echoes for openssl s_client.
. "$(dirname "$0")/lib.sh"
: "${SESSION_CLIENT:?}"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids" --log-level debug
start_rev_server

# session NAME EXPECT_PEER [--nonblocking]: session_client in the background,
# stdin from the fifo $T/NAME.in held open on fd 8; sets SC to its pid.
session() {
  mkfifo "$T/$1.in"
  exec 8<>"$T/$1.in"
  # shellcheck disable=SC2086 # the flag is one word or none
  bg "$SESSION_CLIENT" ${3:-} "$T/kd.sock" spiffe://example.org/client "$2" "$port" 300 "hello-$1" \
    <"$T/$1.in" >"$T/$1.out" 2>"$T/$1.err"
  SC=${PIDS[-1]}
}
stored() { grep -c "stored [0-9]* session ticket" "$T/kd.log" || true; }
exits_ok() { # exits_ok PID: it exits 0 within 10 s
  for _ in $(seq 200); do running "$1" || break; sleep 0.05; done
  wait "$1"
}

session s1 spiffe://example.org/peer-server
wait_for "$T/s1.err" "answer read|session_client: [a-z ]+: " && grep -q "answer read" "$T/s1.err" \
  && pass "session: handshake and one line over the sans-IO API" || fail "s1: $(cat "$T/s1.err")"
grep -q "$(echo hello-s1 | rev)" "$T/s1.out" && pass "session: the peer's answer decrypted (fed one byte at a time)" \
  || fail "s1 answer: $(cat "$T/s1.out")"
grep -q "established TLSv1.3 .* peer=spiffe://example.org/peer-server local=spiffe://example.org/client want_read=[1-9]" "$T/s1.err" \
  && ! grep -q "established.* resumed" "$T/s1.err" \
  && pass "session: full handshake over several WANT_READ steps" || fail "s1: $(grep established "$T/s1.err")"
grep -q "answer read, want_read=[1-9][0-9]" "$T/s1.err" \
  && pass "session: kh_session_open asked for more bytes on every partial record" \
  || fail "s1: $(grep 'answer read' "$T/s1.err")"
sleep 0.5
[ "$(stored)" -eq 0 ] && pass "tickets: reading handed nothing to keyholdd" \
  || fail "tickets reached keyholdd before kh_session_flush_tickets"
echo flush >&8
wait_for "$T/kd.log" "stored [0-9]+ session ticket" && pass "tickets: kh_session_flush_tickets handed them back" \
  || fail "no tickets stored after the flush"
exits_ok "$SC" && grep -q "session_client: closed" "$T/s1.err" && pass "session: closed, exit 0" \
  || fail "s1 exit: $(tail -2 "$T/s1.err")"
exec 8>&-

session s2 spiffe://example.org/peer-server
wait_for "$T/s2.err" "answer read|session_client: [a-z ]+: " >/dev/null
grep -q "established TLSv1.3 .* resumed" "$T/s2.err" && grep -q "$(echo hello-s2 | rev)" "$T/s2.out" \
  && pass "session: the next session resumed with the handed-back tickets" || fail "s2: $(cat "$T/s2.err")"
echo flush >&8
exits_ok "$SC" && pass "session: resumed session closed, exit 0" || fail "s2 exit: $(tail -2 "$T/s2.err")"
exec 8>&-

# A peer that sends 12 tickets: the session keeps the first 8 (its bound),
# all handed back by the one flush.
port12=$(free_port)
bg openssl s_server -tls1_3 -num_tickets 12 -Verify 1 -verify_return_error -CAfile "$P/ca/ca.crt" \
  -cert "$P/peer/server.crt" -key "$P/peer/server.key" -accept "127.0.0.1:$port12" -rev \
  <"$T/srv.in" >"$T/srv12.out" 2>&1
wait_for "$T/srv12.out" ACCEPT
keep_port=$port
port=$port12
n=$(stored)
session s12 spiffe://example.org/peer-server
wait_for "$T/s12.err" "answer read|session_client: [a-z ]+: " >/dev/null
sleep 0.3 # the tickets after the answer's record, if any, arrive meanwhile
echo flush >&8
exits_ok "$SC" && grep -q "$(echo hello-s12 | rev)" "$T/s12.out" || fail "s12: $(tail -2 "$T/s12.err")"
for _ in $(seq 100); do [ "$(stored)" -gt "$n" ] && break; sleep 0.05; done
grep -q "stored 8 session ticket" "$T/kd.log" && ! grep -qE "stored (9|1[0-9]) session ticket" "$T/kd.log" \
  && pass "tickets: 12 sent by the peer, the session's 8 handed back in one flush" \
  || fail "tickets bound: $(grep stored "$T/kd.log")"
exec 8>&-
port=$keep_port

session s3 spiffe://example.org/someone-else
st=0
exits_ok "$SC" || st=$?
[ "$st" -ne 0 ] && grep -q "handshake: sidecar: .*not one of the 1 expected peers" "$T/s3.err" \
  && pass "session: an unexpected peer fails the handshake with the sidecar's reason" \
  || fail "s3 ($st): $(cat "$T/s3.err")"
exec 8>&-

# --- non-blocking sessions: the loop waits for the sidecar's fd ---
session nb1 spiffe://example.org/peer-server --nonblocking
wait_for "$T/nb1.err" "answer read|session_client: [a-z ]+: " >/dev/null
# Two waits at least (the start and the next), and the fd readable only when
# an answer came: no wake-up found the answer missing (the loop never spins).
nbw=$(sed -n 's/.*established TLSv1.3 .* want_read=[1-9][0-9]* want_sidecar=\([0-9]*\) spurious_wakes=0$/\1/p' "$T/nb1.err")
[ -n "$nbw" ] && [ "$nbw" -ge 2 ] \
  && grep -q "$(echo hello-nb1 | rev)" "$T/nb1.out" \
  && pass "non-blocking: the start and the next each waited on the sidecar's fd ($nbw waits), line answered" \
  || fail "nb1: $(cat "$T/nb1.err")"
grep -q "want_sidecar=0" "$T/s1.err" && pass "blocking: the same session never returned WANT_SIDECAR" \
  || fail "s1: $(grep established "$T/s1.err")"
echo flush >&8
exits_ok "$SC" && grep -q "session_client: closed" "$T/nb1.err" && pass "non-blocking: closed, exit 0" \
  || fail "nb1 exit: $(tail -2 "$T/nb1.err")"
exec 8>&-

session nb3 spiffe://example.org/someone-else --nonblocking
st=0
exits_ok "$SC" || st=$?
[ "$st" -ne 0 ] && grep -q "handshake: sidecar: .*not one of the 1 expected peers" "$T/nb3.err" \
  && pass "non-blocking: an unexpected peer fails the handshake with the sidecar's reason" \
  || fail "nb3 ($st): $(cat "$T/nb3.err")"
exec 8>&-

# --- server side ---
bg "$SESSION_CLIENT" --serve "$T/kd.sock" spiffe://example.org/server 50 2>"$T/srv1.err"
SV=${PIDS[-1]}
wait_for "$T/srv1.err" "listening on"
SPORT=$(sed -n 's/.*listening on \([0-9]*\)$/\1/p' "$T/srv1.err")
(echo "line-to-echo"; sleep 0.5) | timeout 10 openssl s_client -quiet -no_ign_eof -tls1_3 -connect "127.0.0.1:$SPORT" \
  -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" -verify_return_error \
  >"$T/sc.out" 2>"$T/sc.err" || true
grep -qx "line-to-echo" "$T/sc.out" && pass "server session: openssl s_client's line echoed" \
  || fail "server session: $(cat "$T/sc.err" "$T/srv1.err")"
exits_ok "$SV" && grep -q "established TLSv1.3 .* local=spiffe://example.org/server want_read=[1-9]" "$T/srv1.err" \
  && grep -q "echoed 13 bytes, closed" "$T/srv1.err" \
  && pass "server session: handshake over WANT_READ steps, echo until close_notify, exit 0" \
  || fail "server session: $(cat "$T/srv1.err")"

bg "$SESSION_CLIENT" --nonblocking --serve "$T/kd.sock" spiffe://example.org/server 50 2>"$T/srv2.err"
SV=${PIDS[-1]}
wait_for "$T/srv2.err" "listening on"
SPORT=$(sed -n 's/.*listening on \([0-9]*\)$/\1/p' "$T/srv2.err")
(echo "nb-line"; sleep 0.5) | timeout 10 openssl s_client -quiet -no_ign_eof -tls1_3 -connect "127.0.0.1:$SPORT" \
  -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" -verify_return_error \
  >"$T/sc2.out" 2>"$T/sc2.err" || true
exits_ok "$SV" && grep -qx "nb-line" "$T/sc2.out" \
  && grep -q "established TLSv1.3 .* local=spiffe://example.org/server want_read=[1-9][0-9]* want_sidecar=[1-9]" "$T/srv2.err" \
  && pass "non-blocking server session: waited on the sidecar's fd, echoed s_client's line" \
  || fail "nb server: $(cat "$T/sc2.err" "$T/srv2.err")"
finish

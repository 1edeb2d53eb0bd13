#!/usr/bin/env bash
# Crypto worker threads (keyholdd --workers): many concurrent handshakes,
# stalled ones cut off at the deadline, client cancellations racing the
# workers and malformed requests, all at once on keyholdd --workers 4; then
# SIGTERM with handshakes still queued must exit 0 (in an ASan build:
# without leaks). --workers 0 (handshakes on the event loop) still serves.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
bg "$KEYHOLDD" --socket "$T/kd.sock" --identities "$P/ids" --workers 4 \
  --handshake-timeout-ms 3000 --max-handshakes-per-caller 1000 2>"$T/kd.log"
KD_PID=${PIDS[-1]}
KD_PIDS+=("$KD_PID")
KD_LOGS+=("$T/kd.log")
wait_for "$T/kd.log" "listening on"
grep -q "4 crypto workers" "$T/kd.log" && pass "keyholdd started 4 crypto workers" \
  || fail "no '4 crypto workers' in the log: $(grep 'listening on' "$T/kd.log")"
n=$(ls "/proc/$KD_PID/task" | while read -r t; do cat "/proc/$KD_PID/task/$t/comm"; done | grep -c '^kh-crypto-' || true)
[ "$n" -eq 4 ] && pass "4 kh-crypto-* threads" || fail "$n kh-crypto-* threads"
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo
raw() { "$S2A_RAW" --socket "$T/kd.sock" --expect "$1" "$2"; }

client_loop() { # client_loop ID N: N handshakes + one echoed line each
  for i in $(seq "$2"); do
    if echo_handshake "c$1-$i" 15; then
      echo OK
    else
      echo "FAIL c$1-$i"
    fi
  done
}
chaos() { # chaos KIND CODE N R: N concurrent raw cases that must end with CODE
  local pids=() bad=0 i
  for i in $(seq "$3"); do raw "$2" "$1" >"$T/raw.$1.$4.$i" 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
  echo "$1 $bad"
}

pids=()
for c in $(seq 6); do client_loop "$c" 10 >"$T/loop.$c" & pids+=($!); done
for r in 1 2 3; do
  chaos hold DEADLINE_EXCEEDED 15 $r >"$T/chaos.hold.$r" & pids+=($!)
  chaos disconnect-mid CANCELLED 15 $r >"$T/chaos.cancel.$r" & pids+=($!)
  chaos garbage-tls INVALID_ARGUMENT 8 $r >"$T/chaos.garbage.$r" & pids+=($!)
  chaos half-close CANCELLED 8 $r >"$T/chaos.half.$r" & pids+=($!)
  # Clients killed mid-handshake (the app dies while a worker holds its call).
  for k in $(seq 5); do
    timeout -s KILL 0.0$((k % 9 + 1)) "$KEYHOLD" connect --sidecar "$T/kd.sock" \
      --identity spiffe://example.org/client "127.0.0.1:$PORT" </dev/null >/dev/null 2>&1 &
    pids+=($!)
  done
  sleep 1
done
for p in "${pids[@]}"; do wait "$p" || true; done
ok=$(cat "$T"/loop.* | grep -c "^OK" || true)
bad=$(cat "$T"/loop.* | grep -c "^FAIL" || true)
[ "$bad" -eq 0 ] && [ "$ok" -eq 60 ] && pass "6 clients x 10 handshakes through 4 workers amid the chaos: $ok OK" \
  || fail "$bad of $((ok + bad)) handshakes failed: $(cat "$T"/client.*.err | sort | uniq -c | head -5)"
for kind in hold cancel garbage half; do
  b=$(cat "$T"/chaos."$kind".* | awk '{s += $2} END {print s + 0}')
  [ "$b" -eq 0 ] && pass "chaos $kind: every stream ended with the expected status" \
    || fail "chaos $kind: $b streams ended otherwise"
done
cat "$T"/raw.* | awk '{print $1, $2}' | sort | uniq -c | sed 's/^/# /' # how the raw streams ended
grep -q 'result=DEADLINE_EXCEEDED' "$T/kd.log" && pass "stalled handshakes cut off at the deadline" \
  || fail "no DEADLINE_EXCEEDED logged"
kill -0 "$KD_PID" && pass "keyholdd still serving" || fail "keyholdd died"
echo hi | timeout 15 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --expect-peer spiffe://example.org/server "127.0.0.1:$PORT" 2>"$T/after.err" | grep -qx hi \
  && pass "handshake after the chaos" || fail "after the chaos: $(tail -2 "$T/after.err")"

# SIGTERM while hundreds of handshakes are open and requests are queued.
bg "$KEYHOLDD" --socket "$T/term.sock" --identities "$P/ids" --workers 4 \
  --max-handshakes-per-caller 1000 2>"$T/term.log"
TERM_PID=${PIDS[-1]}
wait_for "$T/term.log" "listening on"
"$S2A_RAW" --socket "$T/term.sock" --half-open 300 >"$T/term.flood" 2>&1 &
FLOOD=$!
PIDS+=("$FLOOD")
for _ in $(seq 30); do bg "$S2A_RAW" --socket "$T/term.sock" --expect CANCELLED disconnect-mid >/dev/null 2>&1; done
sleep 0.7
kill -TERM "$TERM_PID"
st=0
for _ in $(seq 500); do running "$TERM_PID" || break; sleep 0.05; done
if running "$TERM_PID"; then
  kill -KILL "$TERM_PID"
  fail "keyholdd --workers 4 hung after SIGTERM with handshakes open"
else
  wait "$TERM_PID" || st=$?
  [ "$st" -eq 0 ] && pass "SIGTERM with 300 handshakes open: exit 0" \
    || fail "SIGTERM with handshakes open: exit $st; $(tail -5 "$T/term.log")"
fi
# The flood client ends once its streams fail; bounded, as every wait here.
for _ in $(seq 400); do running "$FLOOD" || break; sleep 0.05; done
kill -KILL "$FLOOD" 2>/dev/null || true
wait "$FLOOD" 2>/dev/null || true

# --workers 0: handshakes on the event loop, as before the pool.
bg "$KEYHOLDD" --socket "$T/inline.sock" --identities "$P/ids" --workers 0 2>"$T/inline0.log"
KD_PIDS+=("${PIDS[-1]}")
KD_LOGS+=("$T/inline0.log")
wait_for "$T/inline0.log" "listening on"
grep -q ", 0 crypto workers" "$T/inline0.log" && pass "--workers 0: no crypto workers" \
  || fail "--workers 0: $(grep 'listening on' "$T/inline0.log")"
echo hi | timeout 15 "$KEYHOLD" connect --sidecar "$T/inline.sock" --identity spiffe://example.org/client \
  --expect-peer spiffe://example.org/server "127.0.0.1:$PORT" 2>"$T/inline.err" >"$T/inline.out" || true
# (the serve side still goes through kd.sock, with workers)
grep -qx hi "$T/inline.out" && pass "--workers 0 serves handshakes" || fail "--workers 0: $(tail -2 "$T/inline.err")"
"$KEYHOLDD" --socket "$T/x.sock" --identities "$P/ids" --workers many 2>"$T/bad.err" \
  && fail "--workers many accepted" || { grep -q "not a number" "$T/bad.err" \
  && pass "--workers many refused" || fail "--workers many: $(cat "$T/bad.err")"; }
finish

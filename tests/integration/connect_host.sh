#!/usr/bin/env bash
# kh_connect_host (keyhold connect uses it): it resolves and connects
# itself, with the S2A start (the sidecar's first round trip) running while
# the TCP handshake does. Checks: a name with several addresses where only
# the last one listens (localhost: ::1 refused, then 127.0.0.1) connects,
# verified against that name (a private mount namespace gives the name both
# addresses in its own /etc/hosts); a refused port and an unresolvable name give
# their own errors; a connect that never completes (a listener whose accept
# queue is full drops the SYN) ends at the handshake deadline with a
# connect error, after keyholdd already had the S2A start (the overlap);
# keyholdd serves the next connection after each failure.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids" --log-level debug
ID=(--sidecar "$T/kd.sock" --identity spiffe://example.org/client)

# one_line NAME ARGS...: keyhold connect sends one line to the reversing
# server and prints its answer; stderr in $T/NAME.err.
one_line() {
  local name=$1
  shift
  echo "line-$name" | timeout 20 "$KEYHOLD" connect "${ID[@]}" "$@" >"$T/$name.out" 2>"$T/$name.err"
}

start_rev_server # s_server -rev on 127.0.0.1:$port, certificate for localhost
printf '::1 localhost\n127.0.0.1 localhost\n' >"$T/hosts"
# shellcheck disable=SC2016 # expanded by the inner shell
unshare -rm sh -c 'mount --bind "$1" /etc/hosts && shift && getent ahosts localhost >"$0.addrs" && exec "$@"' \
  "$T/lh" "$T/hosts" sh -c 'echo line-lh | timeout 20 "$@"' sh "$KEYHOLD" connect "${ID[@]}" "localhost:$port" \
  >"$T/lh.out" 2>"$T/lh.err" || true
first=$(awk 'NR == 1 {print $1}' "$T/lh.addrs" 2>/dev/null || true)
[ "$first" = "::1" ] && grep -q "$(echo line-lh | rev)" "$T/lh.out" && grep -q "connected TLSv1.3" "$T/lh.err" \
  && pass "localhost (::1 first, refused; then 127.0.0.1) connected to the address that listens, name verified" \
  || fail "two addresses (first: ${first:-none}): $(cat "$T/lh.err")"

closed=$(free_port)
st=0
one_line refused "127.0.0.1:$closed" || st=$?
[ "$st" -ne 0 ] && grep -q "cannot connect to 127.0.0.1:$closed: Connection refused \[IO\]" "$T/refused.err" \
  && pass "refused port: exit $st, 'cannot connect to 127.0.0.1:$closed: Connection refused [IO]'" \
  || fail "refused ($st): $(cat "$T/refused.err")"

st=0
one_line nxdomain "no-such-host.invalid:443" || st=$?
[ "$st" -ne 0 ] && grep -q "cannot resolve no-such-host.invalid" "$T/nxdomain.err" \
  && pass "unresolvable name: exit $st, 'cannot resolve no-such-host.invalid'" \
  || fail "nxdomain ($st): $(cat "$T/nxdomain.err")"

# A listener with a backlog of 0 and nobody accepting: after one queued
# connection, further SYNs are dropped and a connect stays under way.
/usr/bin/python3 - "$T/hole.port" <<'PY' &
import socket, sys, time
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(0)
fillers = []
for _ in range(3):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(ls.getsockname())
    fillers.append(c)
time.sleep(0.2)
open(sys.argv[1] + ".tmp", "w").write(str(ls.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
PY
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/hole.port" ] && break; sleep 0.05; done
hole=$(cat "$T/hole.port")
cancelled() { grep -c 'result=CANCELLED reason="client closed the stream"' "$T/kd.log" || true; }
starts=$(cancelled)
st=0
t0=$(date +%s%N)
one_line hole --timeout 1500 "127.0.0.1:$hole" || st=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$st" -ne 0 ] && grep -q "connect to 127.0.0.1:$hole did not finish in time \[DEADLINE_EXCEEDED\]" "$T/hole.err" \
  && [ "$ms" -lt 10000 ] \
  && pass "connect never completing: the handshake deadline (1.5 s) ends it in $ms ms, named" \
  || fail "black hole ($st, $ms ms): $(cat "$T/hole.err")"
after=$(cancelled)
[ "$after" -gt "$starts" ] && pass "the S2A start reached keyholdd while the TCP connect was under way (its stream cancelled at the deadline)" \
  || fail "no S2A session started during the connect ($starts -> $after): $(tail -5 "$T/kd.log")"

one_line again "127.0.0.1:$port" && grep -q "$(echo line-again | rev)" "$T/again.out" \
  && pass "keyholdd serves the next connection after the failures" || fail "again: $(cat "$T/again.err")"
finish

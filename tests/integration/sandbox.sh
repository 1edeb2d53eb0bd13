#!/usr/bin/env bash
# Sandbox: forbidden syscalls kill keyholdd with SIGSYS (--sandbox-selftest),
# --no-sandbox / KEYHOLD_SANDBOX=0 switch it off, a serving keyholdd runs with
# seccomp filter mode, no_new_privs and no capabilities on every thread, a
# handshake works under the filter, and SIGTERM still shuts down cleanly.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
# An AddressSanitizer build of keyholdd leaves the sandbox off by default
# (LeakSanitizer ptrace()s the process at exit, which the sandbox forbids):
# there this test forces it on, and turns leak detection off for its keyholdd.
# A plain build is tested with its default (KEYHOLD_SANDBOX unset: on).
if grep -q AddressSanitizer "$KEYHOLDD"; then
  export KEYHOLD_SANDBOX=1 ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
else
  unset KEYHOLD_SANDBOX
fi

# 1. Each forbidden syscall dies by SIGSYS: exit status 128 + 31.
for sc in execve inet-socket ptrace; do
  rc=0
  "$KEYHOLDD" --sandbox-selftest="$sc" 2>"$T/selftest-$sc.err" || rc=$?
  [ "$rc" -eq 159 ] && pass "selftest $sc: killed by SIGSYS" \
    || fail "selftest $sc: exit status $rc, not 159: $(cat "$T/selftest-$sc.err")"
done

# 2. Without the sandbox the same execve goes through (/bin/true: status 0).
rc=0
"$KEYHOLDD" --no-sandbox --sandbox-selftest=execve 2>"$T/nosb.err" || rc=$?
[ "$rc" -ne 159 ] && pass "--no-sandbox: execve not killed (status $rc)" || fail "--no-sandbox: still SIGSYS"
[ "$rc" -eq 0 ] && pass "--no-sandbox: execve ran /bin/true" || fail "--no-sandbox: status $rc: $(cat "$T/nosb.err")"
rc=0
KEYHOLD_SANDBOX=0 "$KEYHOLDD" --sandbox-selftest=execve 2>"$T/nosb-env.err" || rc=$?
[ "$rc" -eq 0 ] && pass "KEYHOLD_SANDBOX=0: execve not killed" || fail "KEYHOLD_SANDBOX=0: status $rc"
rc=0
"$KEYHOLDD" --sandbox-selftest=bogus 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] && pass "unknown selftest refused (status 2)" || fail "unknown selftest: status $rc"

# 3. A serving keyholdd: filter, no_new_privs, no capabilities, on all threads.
start_keyholdd kd "$P/ids"
KD_PID=${PIDS[-1]}
field() { awk -v k="$1:" '$1 == k {print $2}' "$2"; }
st=/proc/$KD_PID/status
[ "$(field Seccomp "$st")" = 2 ] && pass "Seccomp: 2 (filter mode)" || fail "Seccomp: $(field Seccomp "$st")"
[ "$(field NoNewPrivs "$st")" = 1 ] && pass "NoNewPrivs: 1" || fail "NoNewPrivs: $(field NoNewPrivs "$st")"
for cap in CapEff CapPrm CapInh CapAmb; do
  [ "$(field "$cap" "$st")" = 0000000000000000 ] && pass "$cap 0000000000000000" \
    || fail "$cap $(field "$cap" "$st")"
done
if [ "$(id -u)" -eq 0 ]; then # only root holds CAP_SETPCAP to empty the bounding set
  [ "$(field CapBnd "$st")" = 0000000000000000 ] && pass "CapBnd 0000000000000000" \
    || fail "CapBnd $(field CapBnd "$st")"
fi
bad=0 n=0
for ts in /proc/"$KD_PID"/task/*/status; do
  n=$((n + 1))
  [ "$(field Seccomp "$ts")" = 2 ] && [ "$(field NoNewPrivs "$ts")" = 1 ] \
    && [ "$(field CapEff "$ts")" = 0000000000000000 ] \
    && [ "$(field CapPrm "$ts")" = 0000000000000000 ] || { bad=1; echo "    $ts:"; grep -E "^(Name|Seccomp|NoNewPrivs|Cap)" "$ts" | sed 's/^/      /'; }
done
[ "$bad" -eq 0 ] && [ "$n" -gt 1 ] && pass "all $n threads filtered, no_new_privs, no capabilities" \
  || fail "some of the $n threads are not locked down"
grep -q "seccomp filter on" "$T/kd.log" && pass "sandbox logged" || fail "no sandbox line in the log"

# 4. A handshake (and data both ways) under the filter, against openssl s_server.
port=$(free_port)
mkfifo "$T/srv.in" "$T/cli.in"
exec 5<>"$T/srv.in" 6<>"$T/cli.in"
bg openssl s_server -tls1_3 -Verify 1 -verify_return_error -CAfile "$P/ca/ca.crt" \
  -cert "$P/peer/server.crt" -key "$P/peer/server.key" -accept "127.0.0.1:$port" \
  <"$T/srv.in" >"$T/srv.out" 2>&1
wait_for "$T/srv.out" ACCEPT
bg "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --expect-peer spiffe://example.org/peer-server "127.0.0.1:$port" <"$T/cli.in" >"$T/cli.out" 2>"$T/cli.err"
wait_for "$T/cli.err" "connected TLSv1.3" && pass "handshake under the filter" \
  || fail "handshake under the filter: $(cat "$T/cli.err")"
echo "to-server" >&6
wait_for "$T/srv.out" "^to-server" && pass "client -> server data" || fail "client -> server data"
echo "to-client" >&5
wait_for "$T/cli.out" "^to-client" && pass "server -> client data" || fail "server -> client data"
exec 6>&- 5>&-
grep -q "result=OK" "$T/kd.log" && pass "sidecar logged the handshake OK" || fail "sidecar log: $(tail -3 "$T/kd.log")"
kill -0 "$KD_PID" 2>/dev/null && pass "keyholdd still alive after the handshake" || fail "keyholdd died"

# 5. SIGTERM shutdown under the filter: exit 0, socket removed.
kill -TERM "$KD_PID"
rc=0
wait "$KD_PID" || rc=$?
[ "$rc" -eq 0 ] && pass "SIGTERM: exit 0 under the filter" || fail "SIGTERM: exit status $rc"
[ ! -e "$T/kd.sock" ] && pass "SIGTERM: socket removed" || fail "socket left behind"

# 6. --no-sandbox on a serving keyholdd: no filter, a warning.
bg "$KEYHOLDD" --no-sandbox --socket "$T/nosb.sock" --identities "$P/ids" 2>"$T/nosb.log"
wait_for "$T/nosb.log" "listening on"
[ "$(field Seccomp "/proc/${PIDS[-1]}/status")" = 0 ] && pass "--no-sandbox: Seccomp: 0" \
  || fail "--no-sandbox: Seccomp: $(field Seccomp "/proc/${PIDS[-1]}/status")"
grep -q "sandbox disabled" "$T/nosb.log" && pass "--no-sandbox: warning logged" || fail "--no-sandbox: no warning"
finish

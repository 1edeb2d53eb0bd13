#!/usr/bin/env bash
# Policy reload without a restart: a caller (uid 65534 through setpriv)
# granted by the policy connects; the file is replaced (atomic rename, as a
# ConfigMap update does) with a policy that no longer grants it, and within
# seconds it is refused; a broken file and one naming an unknown identity
# are refused with their error while the rules in force stay; SIGHUP
# reloads; a limits change is logged as needing a restart; the reloads are
# counted in the metrics; keyholdd serves throughout and exits 0.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "not ok - must run as root to switch uids with setpriv"; exit 1; }
make_pki
P=$T/pki
chmod 755 "$T"
NOBODY=65534
NB=(setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups --)
start_rev_server

policy() { # policy UID [EXTRA]: write the policy granting UID identity "client", atomically
  cat >"$T/.p" <<YAML
socket:
  path: $T/kd.sock
  group: $NOBODY
identities_dir: $P/ids
${2:-}
identities:
  ${3:-client}:
    callers:
      uids: [$1]
YAML
  mv -f "$T/.p" "$T/policy.yaml"
}
connect() { # connect NAME: one handshake as uid 65534
  echo "hello-$1" | timeout 10 "${NB[@]}" "$KEYHOLD" connect --sidecar "$T/kd.sock" \
    --identity spiffe://example.org/client "127.0.0.1:$port" >"$T/$1.out" 2>"$T/$1.err"
}
reloads() { # reloads RESULT: keyhold_reloads_total for the policy
  curl -s --unix-socket "$T/m.sock" http://x/metrics |
    awk -v r="$1" 'index($0, "keyhold_reloads_total{kind=\"policy\",result=\"" r "\"}") == 1 { print $NF }'
}

policy $NOBODY
start_keyholdd kd "$P/ids" --policy "$T/policy.yaml" --metrics-listen "unix:$T/m.sock"
connect a && grep -q olleh "$T/a.out" && pass "granted caller connects" || fail "a: $(cat "$T/a.err")"

policy 4242
wait_for "$T/kd.log" "policy reloaded \(file changed\) file=$T/policy.yaml identity_rules=1" 10 &&
  pass "file change reloaded the policy" || fail "no reload after the file changed"
connect b && fail "caller still granted after the reload" ||
  { grep -q "PERMISSION_DENIED" "$T/b.err" && pass "the new policy refuses it" || fail "b: $(cat "$T/b.err")"; }

printf 'identities:\n  client:\n    callers: {uids: [oops-not-a-uid-]}\n' >"$T/.p" && mv -f "$T/.p" "$T/policy.yaml"
wait_for "$T/kd.log" "policy reload \(file changed\) refused, the rules in force stay: .*policy.yaml:3" 10 &&
  pass "a broken policy is refused with its line" || fail "broken policy not refused"
connect c && fail "broken policy changed the rules" || pass "the rules in force stayed"

policy $NOBODY "" nosuch
wait_for "$T/kd.log" "refused, the rules in force stay: .*identities.nosuch: no such identity" 10 &&
  pass "a policy naming an unknown identity is refused" || fail "unknown identity not refused"

policy $NOBODY "limits: {handshake_timeout_ms: 5000}"
wait_for "$T/kd.log" "the new limits takes effect only at restart" 10 &&
  pass "a limits change is logged as needing a restart" || fail "no restart warning"
connect d && grep -q olleh "$T/d.out" && pass "granted again after the reload" || fail "d: $(cat "$T/d.err")"

# SIGHUP reloads even when the file did not change (here: back to 4242 first).
policy 4242
wait_for "$T/kd.log" "identity_rules=1" 10
sleep 1.2 # one more look at the file has passed; the next change is a SIGHUP's
n=$(grep -c "policy reloaded (SIGHUP)" "$T/kd.log" || true)
kill -HUP "${KD_PIDS[0]}"
wait_for "$T/kd.log" "policy reloaded \(SIGHUP\)" 10 && [ "$n" = 0 ] && pass "SIGHUP reloads" ||
  fail "no SIGHUP reload"
connect e && fail "SIGHUP reload lost the rules" || pass "after SIGHUP the policy in force refuses"

ok=$(reloads ok) bad=$(reloads refused)
[ "${ok:-0}" -ge 4 ] && [ "${bad:-0}" = 2 ] && pass "reloads counted (ok=$ok refused=$bad)" ||
  fail "reload metrics ok=$ok refused=$bad"
finish

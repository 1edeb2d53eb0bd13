#!/usr/bin/env bash
# Connection limits (reliability finding 3): any uid that can reach the
# socket must not be able to lock everyone out. Part 1 (short timeouts): a
# flood of half-open connections (part of the HTTP/2 preface, then silence)
# is capped per uid and closed at the preface timeout; idle HTTP/2
# connections are closed at the idle timeout; a caller the policy grants
# nothing keeps at most 2 connections and each call on them is refused
# before its request is read; a legitimate caller gets through throughout.
# Part 2: floods from many uids stop at max_connections less the headroom
# kept for new callers, memory comes back afterwards, and SIGTERM during a
# flood ends keyholdd promptly with a clean exit.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "not ok - must run as root (setpriv)"; exit 1; }
: "${CONN_FLOOD:?}"
make_pki
P=$T/pki
chmod 755 "$T"
PY=/usr/bin/python3
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --groups=4242 -- "$@"; }
flood() { # flood UID ARGS...: conn_flood.py as UID
  local u=$1; shift
  as "$u" "$PY" "$CONN_FLOOD" --socket "$T/kd.sock" "$@"
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2"; }
fds() { ls "/proc/$1/fd" | wc -l; }
start_rev_server
UIDS="0, 65534, $(seq -s ', ' 2001 2010)"
policy() { # policy FILE LIMITS
  cat >"$1" <<YAML
socket: {path: $T/kd.sock, mode: "0660", group: 4242}
identities_dir: $P/ids
limits: {$2}
identities:
  client: {callers: {uids: [$UIDS]}}
YAML
}

# --- Part 1 ----------------------------------------------------------------
policy "$T/p1.yaml" "max_connections_per_caller: 64, preface_timeout_ms: 1000, idle_timeout_ms: 2000"
bg "$KEYHOLDD" --policy "$T/p1.yaml" 2>"$T/kd1.log"
KD=${PIDS[-1]}; KD_PIDS+=("$KD"); KD_LOGS+=("$T/kd1.log")
wait_for "$T/kd1.log" "listening on"
base=$(fds "$KD")

flood 65534 --count 2000 --mode partial --hold 8 --until-closed >"$T/partial.out" &
FP=$!
sleep 0.7
held=$(( $(fds "$KD") - base ))
rev_handshake during1 && pass "root's rev_handshake succeeds during a 2000-connection half-open flood" \
  || fail "root during the flood: $(cat "$T/during1.err")"
wait "$FP" || true
cat "$T/partial.out" | sed 's/^/# /'
[ "$held" -le 70 ] && pass "keyholdd held $held connections of the flood (cap 64 per uid)" \
  || fail "keyholdd held $held connections of uid 65534's flood (cap 64)"
later=$(field closed_later "$T/partial.out")
[ "${later:-0}" -le 64 ] && [ "$(field open "$T/partial.out")" = 0 ] \
  && pass "every half-open connection was closed ($later at the preface timeout, the rest at accept)" \
  || fail "half-open flood: $(cat "$T/partial.out")"
last=$(field last_close_s "$T/partial.out")
awk -v l="$last" 'BEGIN {exit !(l <= 4.0)}' && pass "the last one closed ${last} s in (preface timeout 1 s)" \
  || fail "half-open connections lingered ${last} s"
wait_for "$T/kd1.log" 'connection refused uid=65534 .*already has 64 connections' 2 \
  && pass "refusals logged with uid and reason" || fail "no refusal line"
[ "$(grep -c 'connection refused\|connection closed' "$T/kd1.log")" -le 20 ] \
  && pass "refusal lines are rate-limited" || fail "$(grep -c 'connection refused' "$T/kd1.log") refusal lines"

flood 65534 --count 10 --mode preface --hold 8 --until-closed >"$T/idle.out"
[ "$(field closed_later "$T/idle.out")" = 10 ] && awk -v l="$(field last_close_s "$T/idle.out")" 'BEGIN {exit !(l <= 5.0)}' \
  && pass "idle HTTP/2 connections closed at the idle timeout: $(cat "$T/idle.out")" \
  || fail "idle connections: $(cat "$T/idle.out")"

flood 65533 --count 20 --mode preface --hold 3 >"$T/ungranted.out"
fast=$(field closed_fast "$T/ungranted.out"); failed=$(field failed "$T/ungranted.out")
[ $((fast + failed)) -ge 18 ] && pass "uid 65533 (no grant): at most 2 of 20 connections kept: $(cat "$T/ungranted.out")" \
  || fail "ungranted uid: $(cat "$T/ungranted.out")"
echo hi | timeout 10 setpriv --reuid=65533 --regid=65533 --groups=4242 -- "$KEYHOLD" connect --sidecar "$T/kd.sock" \
  --identity spiffe://example.org/client "127.0.0.1:$port" >/dev/null 2>"$T/ungranted.err" \
  && fail "ungranted uid got a handshake" \
  || { grep -q "caller uid 65533 is granted no identity by keyholdd's policy \[PERMISSION_DENIED\]" "$T/ungranted.err" \
       && pass "ungranted uid: PERMISSION_DENIED, granted no identity" || fail "ungranted: $(cat "$T/ungranted.err")"; }
# The refusal comes before the request is read: garbage gets it too (a read
# request would have been INVALID_ARGUMENT "malformed SessionReq").
as 65533 "$S2A_RAW" --socket "$T/kd.sock" --expect PERMISSION_DENIED garbage >"$T/raw.out" 2>&1 \
  && pass "a garbage request from it is refused unread (PERMISSION_DENIED)" || fail "garbage: $(cat "$T/raw.out")"
rev_handshake after1 && pass "root still served after part 1" || fail "after part 1: $(cat "$T/after1.err")"
kill -TERM "$KD"; wait "$KD" 2>/dev/null || fail "keyholdd (part 1) exited non-zero"

# --- Part 2 ----------------------------------------------------------------
policy "$T/p2.yaml" "max_connections_per_caller: 64, max_connections: 512"
bg "$KEYHOLDD" --policy "$T/p2.yaml" 2>"$T/kd2.log"
KD=${PIDS[-1]}; KD_PIDS+=("$KD"); KD_LOGS+=("$T/kd2.log")
wait_for "$T/kd2.log" "listening on"
rev_handshake warm && pass "part 2: serving" || fail "part 2 warm-up: $(cat "$T/warm.err")"
base=$(fds "$KD")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$KD/status"; }
rss0=$(rss)
pids=()
for u in $(seq 2001 2010); do
  flood "$u" --count 64 --mode preface --hold 6 >"$T/many.$u" & pids+=($!)
done
sleep 2
held=$(( $(fds "$KD") - base ))
rss1=$(rss)
rev_handshake during2 && pass "root's rev_handshake succeeds while 10 uids hold 640 connections" \
  || fail "root during the many-uid flood: $(cat "$T/during2.err")"
[ "$held" -le 470 ] && [ "$held" -ge 400 ] \
  && pass "keyholdd holds $held connections: max_connections 512 less the 64 kept for new callers" \
  || fail "keyholdd holds $held connections (want about 448)"
grep -q "the last 64 are kept for callers with fewer than 4" "$T/kd2.log" \
  && pass "headroom refusals logged" || fail "no headroom refusal line"
for p in "${pids[@]}"; do wait "$p" || true; done
if asan_build; then
  echo "# RSS not judged under AddressSanitizer"
else
  rss2=0
  for _ in $(seq 60); do rss2=$(rss); [ "$rss2" -le $((rss0 + rss0 / 10 + 2048)) ] && break; sleep 0.1; done
  [ "$rss2" -le $((rss0 + rss0 / 10 + 2048)) ] \
    && pass "RSS back near baseline after the flood: ${rss0} -> ${rss1} -> ${rss2} kB" \
    || fail "RSS after the flood: ${rss0} -> ${rss1} -> ${rss2} kB"
fi
# SIGTERM while a flood holds every slot: a prompt, clean exit.
for u in $(seq 2001 2010); do flood "$u" --count 64 --mode preface --hold 20 >/dev/null & pids+=($!); done
sleep 2
t0=$(date +%s%N)
kill -TERM "$KD"
st=0
for _ in $(seq 200); do running "$KD" || break; sleep 0.05; done
wait "$KD" 2>/dev/null || st=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$st" -eq 0 ] && [ "$ms" -le 5000 ] && pass "SIGTERM during the flood: exit 0 after $ms ms (drain_timeout_ms 5000)" \
  || fail "SIGTERM during the flood: exit $st after $ms ms"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
finish

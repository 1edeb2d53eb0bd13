#!/usr/bin/env bash
# Soak (reliability issue, must-show): for KH_SOAK_SECONDS (default 180; set
# it higher for a long run) many client processes do full and resumed
# handshakes on both sides through one keyholdd, while the server and the
# client identity are rotated in turn every KH_SOAK_ROTATE seconds (server:
# the Kubernetes ..data symlink swap; client: plain file replacement), and
# keyholdd is restarted twice (SIGTERM, successor on the same socket, as a
# supervisor does). Workers:
#   connect->serve  keyhold connect to keyhold serve (both sides offloaded;
#                   client resumption through keyholdd's cache, server
#                   resumption through the shared ticket keys)
#   connect->peer   keyhold connect to openssl s_server (a real TLS peer)
#   s_client->serve openssl s_client to keyhold serve, -sess_out then -sess_in
# Zero failed handshakes outside the restart windows (from the SIGTERM to
# one second after the successor listens); both sides resume; every keyholdd
# exits 0; keyholdd's RSS once idle at the end is within 25 % + 2 MiB of the
# first keyholdd's idle RSS at start.
. "$(dirname "$0")/lib.sh"
SECS=${KH_SOAK_SECONDS:-180}
ROT=${KH_SOAK_ROTATE:-3}
N=$((SECS / ROT / 2 + 2))
ROTATIONS=$N CLIENT_ROTATIONS=$N bash "$KH_TEST_PKI" "$T/pki" >/dev/null
P=$T/pki
S=$P/ids/server
C=$P/ids/client
openssl rand -hex 48 >"$T/tickets"
chmod 600 "$T/tickets"
now() { date +%s%3N; }

# The server identity in the ..data layout from the start.
mkdir "$S/..v0" && cp "$S/tls.crt" "$S/tls.key" "$S/ca.crt" "$S/..v0/"
ln -s ..v0 "$S/..data"
for f in tls.crt tls.key ca.crt; do ln -s "..data/$f" "$S/.$f.lnk" && mv -fT "$S/.$f.lnk" "$S/$f"; done

KD_N=0
start_kd() { # start_kd: a keyholdd on $T/kd.sock; sets KD
  KD_N=$((KD_N + 1))
  bg "$KEYHOLDD" --socket "$T/kd.sock" --identities "$P/ids" --ticket-keys "$T/tickets" 2>"$T/kd$KD_N.log"
  KD=${PIDS[-1]}
  KD_PIDS+=("$KD")
  KD_LOGS+=("$T/kd$KD_N.log")
  wait_for "$T/kd$KD_N.log" "listening on" 20
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$KD/status"; }
start_kd
sleep 0.5
rss0=$(rss)
start_rev_server
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo

# Each worker writes "START_MS END_MS OK|FAIL KIND [resumed] [detail]" lines.
worker_connect() { # worker_connect NAME PORT EXPECT REPLY-MODE
  local name=$1 port=$2 expect=$3 mode=$4 i=0 t0 line want err
  while [ ! -e "$T/stop" ] && [ $i -lt 100000 ]; do
    i=$((i + 1))
    t0=$(now)
    line="$name-$i"
    want=$line
    [ "$mode" = rev ] && want=$(echo "$line" | rev)
    if out=$(echo "$line" | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" \
      --identity spiffe://example.org/client --expect-peer "$expect" "127.0.0.1:$port" 2>"$T/$name.err") \
      && [ "$out" = "$want" ]; then
      grep -q " resumed" "$T/$name.err" && r=resumed || r=full
      echo "$t0 $(now) OK $name $r"
    else
      err=$(tr '\n' ' ' <"$T/$name.err")
      echo "$t0 $(now) FAIL $name - $err"
    fi
    sleep 0.02
  done >"$T/w.$name"
}
worker_sclient() { # worker_sclient NAME: s_client to serve, full then resumed
  local name=$1 i=0 t0 out sess
  while [ ! -e "$T/stop" ] && [ $i -lt 100000 ]; do
    i=$((i + 1))
    t0=$(now)
    if [ $((i % 2)) -eq 1 ]; then sess=(-sess_out "$T/$name.sess"); else sess=(-sess_in "$T/$name.sess"); fi
    # The handshake is what is judged (s_client's summary line and verify
    # result); the echoed line only if it came back before stdin closed.
    out=$( (echo "$name-$i"; sleep 0.3) | timeout 10 openssl s_client -tls1_3 -connect "127.0.0.1:$PORT" \
      -servername localhost -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" \
      -verify_return_error "${sess[@]}" 2>&1) || true
    if grep -qE "^(New|Reused), TLSv1.3" <<<"$out" && grep -q "Verify return code: 0 (ok)" <<<"$out"; then
      grep -q "^Reused, TLSv1.3" <<<"$out" && r=resumed || r=full
      grep -q "$name-$i$" <<<"$out" && e=echo || e=noecho
      echo "$t0 $(now) OK $name $r $e"
    else
      echo "$t0 $(now) FAIL $name - $(grep -m2 -iE 'error|alert' <<<"$out" | tr '\n' ' ')"
    fi
    sleep 0.02
  done >"$T/w.$name"
}

T_START=$(now)
wpids=()
for i in 1 2 3; do worker_connect "cs$i" "$PORT" spiffe://example.org/server echo & wpids+=($!); done
for i in 1 2; do worker_connect "cp$i" "$port" spiffe://example.org/peer-server rev & wpids+=($!); done
for i in 1 2; do worker_sclient "sc$i" & wpids+=($!); done
PIDS+=("${wpids[@]}")

# Rotations and restarts, on a schedule from the start.
rot=0 srot=0 crot=0 restarts=0
: >"$T/windows"
END=$((T_START + SECS * 1000))
NEXT_ROT=$((T_START + ROT * 1000))
NEXT_RESTART=$((T_START + SECS * 1000 / 3))
while [ "$(now)" -lt "$END" ]; do
  t=$(now)
  if [ "$t" -ge "$NEXT_ROT" ]; then
    rot=$((rot + 1))
    if [ $((rot % 2)) -eq 1 ] && [ $srot -lt $N ]; then # server: ..data swap
      srot=$((srot + 1))
      mkdir "$S/..v$srot" && cp "$P/rot/$srot/tls.crt" "$P/rot/$srot/tls.key" "$S/ca.crt" "$S/..v$srot/"
      ln -s "..v$srot" "$S/..data_tmp" && mv -fT "$S/..data_tmp" "$S/..data"
      rm -rf "$S/..v$((srot - 1))"
    elif [ $crot -lt $N ]; then # client: plain replacement, key then certificate
      crot=$((crot + 1))
      cp "$P/rot-client/$crot/tls.key" "$C/.tls.key.new" && mv -f "$C/.tls.key.new" "$C/tls.key"
      cp "$P/rot-client/$crot/tls.crt" "$C/.tls.crt.new" && mv -f "$C/.tls.crt.new" "$C/tls.crt"
    fi
    NEXT_ROT=$((NEXT_ROT + ROT * 1000))
  fi
  if [ "$t" -ge "$NEXT_RESTART" ] && [ $restarts -lt 2 ]; then
    restarts=$((restarts + 1))
    old=$KD
    t_term=$(now)
    kill -TERM "$old"
    start_kd || fail "restart $restarts: the successor did not start"
    t_up=$(now)
    echo "$t_term $((t_up + 1000))" >>"$T/windows"
    st=0
    for _ in $(seq 200); do running "$old" || break; sleep 0.05; done
    wait "$old" 2>/dev/null || st=$?
    [ "$st" -eq 0 ] && pass "restart $restarts: the old keyholdd exited 0, the new one listened after $((t_up - t_term)) ms" \
      || fail "restart $restarts: the old keyholdd exited $st"
    NEXT_RESTART=$((T_START + SECS * 1000 * 2 / 3))
  fi
  sleep 0.1
done
touch "$T/stop"
for p in "${wpids[@]}"; do wait "$p" 2>/dev/null || true; done

# Judge every handshake.
in_window() { # in_window START END: does [START, END] overlap a restart window?
  awk -v s="$1" -v e="$2" '$1 <= e && s <= $2 {f = 1} END {exit !f}' "$T/windows"
}
cat "$T"/w.* >"$T/all"
total=$(wc -l <"$T/all")
okn=$(grep -c " OK " "$T/all" || true)
excused=0 outside=0
while read -r s e res name rest; do
  [ "$res" = FAIL ] || continue
  if in_window "$s" "$e"; then excused=$((excused + 1)); else
    outside=$((outside + 1))
    [ $outside -le 5 ] && echo "# outside a restart window: $name $rest"
  fi
done <"$T/all"
[ "$outside" -eq 0 ] && pass "$SECS s soak: $okn of $total handshakes OK, 0 failed outside the restart windows ($excused inside)" \
  || fail "$outside handshakes failed outside the restart windows ($okn OK, $excused inside)"
[ "$restarts" -eq 2 ] && pass "keyholdd restarted twice under load" || fail "only $restarts restarts"
[ "$srot" -ge 2 ] && [ "$crot" -ge 2 ] && pass "$srot server and $crot client rotations" \
  || fail "rotations: server $srot, client $crot"
for kind in cs cp sc; do
  full=$(grep " OK $kind[0-9]* full" "$T/all" | wc -l)
  res=$(grep " OK $kind[0-9]* resumed" "$T/all" | wc -l)
  [ "$res" -gt 0 ] && [ "$full" -gt 0 ] && pass "$kind: $full full and $res resumed handshakes" \
    || fail "$kind: $full full, $res resumed"
done
echoed=$(grep -c " OK sc[0-9]* [a-z]* echo" "$T/all" || true)
noecho=$(grep -c " OK sc[0-9]* [a-z]* noecho" "$T/all" || true)
[ "$echoed" -ge $((9 * (echoed + noecho) / 10)) ] && pass "s_client: $echoed of $((echoed + noecho)) echoes came back in 0.3 s" \
  || fail "s_client: only $echoed of $((echoed + noecho)) echoes came back"
reloads=$(cat "$T"/kd*.log | grep -c "identity rotated" || true)
[ "$reloads" -ge $((srot + crot - 2 * restarts)) ] && pass "keyholdd logged $reloads live rotations (a rotation during a restart is read at start-up)" \
  || fail "only $reloads live rotations logged for $((srot + crot)) rotations"
if asan_build; then
  echo "# RSS not judged under AddressSanitizer"
else
  # keyholdd trims its heap once it has been quiet for 2 s.
  for _ in $(seq 50); do rss1=$(rss); [ "$rss1" -le $((rss0 + rss0 / 4 + 2048)) ] && break; sleep 0.1; done
  [ "$rss1" -le $((rss0 + rss0 / 4 + 2048)) ] \
    && pass "idle RSS of the last keyholdd: ${rss1} kB (first one at start: ${rss0} kB)" \
    || fail "idle RSS at the end ${rss1} kB vs ${rss0} kB at the start"
fi
grep -q "shutting down" "$T/kd3.log" && fail "the last keyholdd stopped early" || pass "the last keyholdd still serves"
finish

#!/usr/bin/env bash
# Rotation with session resumption (finding 1). Sessions are bound to the
# certificate that made them: a rotated identity never offers (client) or
# accepts (server) a session of its previous certificate, and a resumption
# that cannot work becomes a full handshake in the same call.
#  Client side: keyhold connect -> openssl s_server -www (tickets on). A full
#  then a resumed handshake; the CLIENT identity gets a new key (same SPIFFE ID
#  and CA) by plain file replacement and by the "..data" symlink swap; the
#  next handshake succeeds as a full one, the one after resumes under the new
#  certificate. Then the same under a loop of handshakes: zero failures, and
#  resumption works again after the last rotation.
#  Server side: openssl s_client -sess_out/-sess_in -> keyhold serve (ticket
#  keys): a session saved before a server rotation is offered after it; the
#  handshake succeeds as a full one, and its new session resumes. Then a loop
#  of chained -sess_in/-sess_out handshakes across two rotations: zero failures.
. "$(dirname "$0")/lib.sh"
ROTATIONS=3 CLIENT_ROTATIONS=6 bash "$KH_TEST_PKI" "$T/pki"
P=$T/pki
C=$P/ids/client
S=$P/ids/server
openssl rand -hex 48 >"$T/tk"
start_keyholdd kd "$P/ids" --ticket-keys "$T/tk" --log-level debug

# openssl s_server -www: TLS 1.3, client certificate required, session
# tickets on (OpenSSL's default: two after a full handshake, one after a
# resumed one); its status page says "New" or "Reused".
WPORT=$(free_port)
bg openssl s_server -tls1_3 -Verify 1 -verify_return_error -CAfile "$P/ca/ca.crt" \
  -cert "$P/peer/server.crt" -key "$P/peer/server.key" -accept "127.0.0.1:$WPORT" -www \
  </dev/null >"$T/www.out" 2>&1
wait_for "$T/www.out" ACCEPT

www() { # www NAME: one keyhold connect (client identity) and one GET; $T/NAME.{out,err}
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" \
    --identity spiffe://example.org/client --expect-peer spiffe://example.org/peer-server \
    "127.0.0.1:$WPORT" >"$T/$1.out" 2>"$T/$1.err" && grep -q "^HTTP/1.0 200 ok" "$T/$1.out"
}
resumed() { grep -q "^keyhold: connected .* resumed$" "$T/$1.err" && grep -q "^Reused, TLSv1.3" "$T/$1.out"; }
full() { grep -q "^keyhold: connected " "$T/$1.err" && ! grep -q "resumed$" "$T/$1.err"; }

# rotations_of DIR: how many times keyholdd has rotated identity DIR so far.
rotations_of() { grep -c "identity rotated dir=$1 " "$T/kd.log" || true; }
wait_rotated() { # wait_rotated DIR N: until identity DIR has rotated more than N times
  for _ in $(seq 200); do [ "$(rotations_of "$1")" -gt "$2" ] && return 0; sleep 0.05; done
  return 1
}
replace_plain() { # replace_plain IDDIR NEWDIR: key first, then certificate, each an atomic rename
  cp "$2/tls.key" "$1/.tls.key.new" && mv -f "$1/.tls.key.new" "$1/tls.key"
  cp "$2/tls.crt" "$1/.tls.crt.new" && mv -f "$1/.tls.crt.new" "$1/tls.crt"
}
to_data_layout() { # to_data_layout IDDIR: files become symlinks through ..data -> ..v0
  mkdir "$1/..v0" && cp "$1/tls.crt" "$1/tls.key" "$1/ca.crt" "$1/..v0/"
  ln -s ..v0 "$1/..data"
  for f in tls.crt tls.key ca.crt; do ln -s "..data/$f" "$1/.$f.lnk" && mv -fT "$1/.$f.lnk" "$1/$f"; done
}
swap_data() { # swap_data IDDIR NEWDIR TAG: the Kubernetes Secret volume update
  local old
  old=$(readlink "$1/..data")
  mkdir "$1/..$3" && cp "$2/tls.crt" "$2/tls.key" "$1/ca.crt" "$1/..$3/"
  ln -s "..$3" "$1/..data_tmp" && mv -fT "$1/..data_tmp" "$1/..data"
  rm -rf "${1:?}/$old"
}
# rotate_client HOW N: rotate the client identity to rot-client/N and wait for keyholdd.
rotate_client() {
  local n0
  n0=$(rotations_of client)
  if [ "$1" = plain ]; then replace_plain "$C" "$P/rot-client/$2"; else swap_data "$C" "$P/rot-client/$2" "v$2"; fi
  wait_rotated client "$n0"
}

# --- client side, one handshake at a time ---
www c1 && full c1 && pass "client: first handshake is full" || fail "client c1: $(cat "$T/c1.err")"
wait_for "$T/kd.log" "stored [0-9]+ session ticket" >/dev/null && www c2 && resumed c2 \
  && pass "client: second handshake resumed" || fail "client c2: $(cat "$T/c2.err")"
rotate_client plain 1 && pass "client identity rotated (plain replacement, new key)" || fail "no client rotation"
www c3 && full c3 && pass "client, after a plain rotation: the next handshake succeeds, full" \
  || fail "client c3 after plain rotation: $(cat "$T/c3.err")"
www c4 && resumed c4 && pass "client, after a plain rotation: resumption works with the new certificate" \
  || fail "client c4: $(cat "$T/c4.err")"

# --- client side under load: a loop of handshakes while the identity rotates ---
(
  for i in $(seq 2000); do
    [ -e "$T/stop" ] && break
    if www "l$i"; then
      if resumed "l$i"; then echo "OK resumed"; else echo "OK full"; fi
    else
      echo "FAIL $i $(tr '\n' ' ' <"$T/l$i.err")"
    fi
    rm -f "$T/l$i.out" "$T/l$i.err"
  done >"$T/load.out"
) &
LOAD=$!
PIDS+=("$LOAD")
more_handshakes() { # more_handshakes N: until N more lines are in load.out (bounded)
  local n0
  n0=$(wc -l <"$T/load.out")
  for _ in $(seq 200); do [ "$(wc -l <"$T/load.out")" -ge $((n0 + $1)) ] && return 0; sleep 0.05; done
  return 1
}
wait_for "$T/load.out" "^OK resumed" >/dev/null && pass "client load running, resuming" || fail "client load"
for n in 2 3; do
  rotate_client plain "$n" && more_handshakes 4 && pass "plain replacement $n under load" \
    || fail "plain replacement $n under load"
done
to_data_layout "$C" # the same certificate: keyholdd reloads it, sessions stay
for n in 4 5; do
  rotate_client data "$n" && more_handshakes 4 && pass "..data swap $n under load" || fail "..data swap $n under load"
done
after=$(wc -l <"$T/load.out")
more_handshakes 4 || true
touch "$T/stop"
wait "$LOAD" || true
tail -n +$((after + 1)) "$T/load.out" | grep -q "^OK resumed" \
  && pass "client load: resumption works again after the last rotation" || fail "no resumption after the last rotation"
total=$(grep -c "^OK" "$T/load.out" || true)
nres=$(grep -c "^OK resumed" "$T/load.out" || true)
failed=$(grep -c "^FAIL" "$T/load.out" || true)
[ "$failed" -eq 0 ] && pass "client load: zero failed handshakes out of $total ($nres resumed)" \
  || fail "client load: $failed of $((total + failed)) handshakes failed; first: $(grep -m1 "^FAIL" "$T/load.out")"
[ "$total" -ge 20 ] && pass "client load did $total handshakes" || fail "client load: only $total handshakes"
rotate_client data 6 && pass "client identity rotated (..data swap, new key)" || fail "no client ..data rotation"
www c5 && full c5 && pass "client, after a ..data swap: the next handshake succeeds, full" \
  || fail "client c5 after ..data swap: $(cat "$T/c5.err")"
www c6 && resumed c6 && pass "client, after a ..data swap: resumption works with the new certificate" \
  || fail "client c6: $(cat "$T/c6.err")"
grep -q "ATTEMPT_TO_REUSE_SESSION_IN_DIFFERENT_CONTEXT" "$T/kd.log" \
  && fail "keyholdd offered a session in another context" || pass "no session offered in another context"

# --- server side: keyhold serve with ticket keys, openssl s_client offers sessions ---
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo
sclient() { # sclient NAME [ARGS...]: one s_client handshake and one echoed line; $T/NAME.out
  local name=$1
  shift
  (echo "hi-$name"; sleep 0.2) | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 \
    -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" \
    -verify_return_error "$@" >"$T/$name.out" 2>&1 && grep -q "hi-$name$" "$T/$name.out"
}
rotate_server() { # rotate_server HOW N
  local n0
  n0=$(rotations_of server)
  if [ "$1" = plain ]; then replace_plain "$S" "$P/rot/$2"; else swap_data "$S" "$P/rot/$2" "v$2"; fi
  wait_rotated server "$n0"
}
sclient s1 -sess_out "$T/s1.sess" && grep -q "^New, TLSv1.3" "$T/s1.out" && [ -s "$T/s1.sess" ] \
  && pass "server: full handshake, session saved" || fail "server s1: $(grep -E 'New|Reused|error' "$T/s1.out")"
sclient s2 -sess_in "$T/s1.sess" && grep -q "^Reused, TLSv1.3" "$T/s2.out" \
  && pass "server: resumed" || fail "server s2: $(grep -E 'New|Reused|error' "$T/s2.out")"
rotate_server plain 1 && pass "server identity rotated (plain replacement)" || fail "no server rotation"
sclient s3 -sess_in "$T/s1.sess" -sess_out "$T/s3.sess" && grep -q "^New, TLSv1.3" "$T/s3.out" \
  && pass "server, after rotation: a session of the old certificate gets a full handshake, no failure" \
  || fail "server s3: $(grep -E 'New|Reused|error' "$T/s3.out")"
sclient s4 -sess_in "$T/s3.sess" && grep -q "^Reused, TLSv1.3" "$T/s4.out" \
  && pass "server, after rotation: a session of the new certificate resumes" \
  || fail "server s4: $(grep -E 'New|Reused|error' "$T/s4.out")"

# Under load: each handshake offers the session the previous one saved.
(
  sess=$T/s3.sess
  for i in $(seq 500); do
    [ -e "$T/sstop" ] && break
    if sclient "sl$i" -sess_in "$sess" -sess_out "$T/sl$i.sess"; then
      grep -q "^Reused" "$T/sl$i.out" && echo "OK resumed" || echo "OK full"
      [ -s "$T/sl$i.sess" ] && sess=$T/sl$i.sess
    else
      echo "FAIL $i $(grep -m1 -iE 'error|alert' "$T/sl$i.out")"
    fi
  done >"$T/sload.out"
) &
SLOAD=$!
PIDS+=("$SLOAD")
wait_for "$T/sload.out" "^OK resumed" >/dev/null && pass "server load running, resuming" || fail "server load"
to_data_layout "$S"
rotate_server data 2 && pass "server ..data swap under load" || fail "server ..data swap"
sl_more() { local n0; n0=$(wc -l <"$T/sload.out"); for _ in $(seq 200); do [ "$(wc -l <"$T/sload.out")" -ge $((n0 + $1)) ] && return 0; sleep 0.05; done; return 1; }
sl_more 3 || true
rotate_server data 3 && pass "server second ..data swap under load" || fail "server second ..data swap"
after=$(wc -l <"$T/sload.out")
sl_more 4 || true
touch "$T/sstop"
wait "$SLOAD" || true
tail -n +$((after + 1)) "$T/sload.out" | grep -q "^OK resumed" \
  && pass "server load: resumption works again after the last rotation" || fail "server: no resumption after the last rotation"
stotal=$(grep -c "^OK" "$T/sload.out" || true)
sfull=$(grep -c "^OK full" "$T/sload.out" || true)
sfailed=$(grep -c "^FAIL" "$T/sload.out" || true)
[ "$sfailed" -eq 0 ] && pass "server load: zero failed handshakes out of $stotal ($sfull fell back to full)" \
  || fail "server load: $sfailed failed; first: $(grep -m1 "^FAIL" "$T/sload.out")"
[ "$sfull" -ge 2 ] && pass "server load: each rotation turned an offered session into a full handshake" \
  || fail "server load: only $sfull full handshakes across two rotations"
grep -q "failed" "$T/serve.log" && fail "keyhold serve logged failures: $(grep failed "$T/serve.log" | head -3)" \
  || pass "keyhold serve saw no failed handshake"
finish

#!/usr/bin/env bash
# Live rotation under load (issue 3, must-show 3). openssl s_client runs a loop
# of mTLS handshakes against `keyhold serve` while the server identity's files
# are replaced three times in place (atomic rename per file) and three times
# by the Kubernetes Secret-volume "..data" symlink swap. Zero handshakes may
# fail, the peer must see each new certificate, broken replacements (a key
# that does not match, a truncated certificate) are refused while handshakes
# keep succeeding with the previous certificate, SIGHUP reloads, and a
# connection established before the first swap still works after the last.
. "$(dirname "$0")/lib.sh"
ROTATIONS=6 bash "$KH_TEST_PKI" "$T/pki"
P=$T/pki
S=$P/ids/server
start_keyholdd kd "$P/ids"
KD_PID=${PIDS[-1]}
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/server --echo

serial_of() { openssl x509 -noout -serial -in "$1" | cut -d= -f2; }

# The load: one handshake per s_client run, its result and the server serial.
(
  for i in $(seq 4000); do
    [ -e "$T/stop" ] && break
    if out=$(timeout 5 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -servername localhost \
      -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" \
      -verify_return_error </dev/null 2>/dev/null) \
      && serial=$(printf '%s\n' "$out" | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2); then
      echo "OK $serial"
    else
      echo "FAIL $i"
    fi
  done >"$T/load.out"
) &
LOAD=$!
PIDS+=("$LOAD")

# A connection established before any rotation.
mkfifo "$T/long.in"
exec 7<>"$T/long.in"
bg openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -quiet -cert "$P/peer/client.crt" \
  -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" <"$T/long.in" >"$T/long.out" 2>"$T/long.err"
echo before >&7
wait_for "$T/long.out" "^before$" && pass "long-lived connection established" || fail "long-lived connection"

# peer_sees SERIAL: the latest handshakes present the certificate SERIAL.
peer_sees() {
  local n0
  n0=$(wc -l <"$T/load.out")
  for _ in $(seq 200); do
    # Only handshakes that started after the swap count.
    if [ "$(wc -l <"$T/load.out")" -gt $((n0 + 1)) ] && tail -n 1 "$T/load.out" | grep -q "OK $1$"; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}
keeps_serving() { # keeps_serving SERIAL: three more handshakes, all with SERIAL
  local n0
  n0=$(wc -l <"$T/load.out")
  for _ in $(seq 200); do [ "$(wc -l <"$T/load.out")" -ge $((n0 + 4)) ] && break; sleep 0.05; done
  ! tail -n +$((n0 + 2)) "$T/load.out" | grep -v "OK $1$" | grep -q .
}

wait_for "$T/load.out" "^OK " && pass "load running" || fail "load did not start"
for i in 1 2 3; do # plain replacement: key first, then certificate, each an atomic rename
  cp "$P/rot/$i/tls.key" "$S/.tls.key.new" && mv -f "$S/.tls.key.new" "$S/tls.key"
  cp "$P/rot/$i/tls.crt" "$S/.tls.crt.new" && mv -f "$S/.tls.crt.new" "$S/tls.crt"
  peer_sees "$(serial_of "$P/rot/$i/tls.crt")" && pass "plain replace $i: peer sees the new certificate" \
    || fail "plain replace $i: still $(tail -n 1 "$T/load.out")"
done

# Broken replacements are refused; the previous certificate stays in service.
good=$(serial_of "$P/rot/3/tls.crt")
cp "$P/rot/1/tls.key" "$S/.k" && mv -f "$S/.k" "$S/tls.key"
wait_for "$T/kd.log" "identity server: new files refused, the previous identity stays: .*tls.key does not match" \
  && pass "mismatched key refused with a log line" || fail "mismatched key not refused"
keeps_serving "$good" && pass "mismatched key: handshakes continue with the previous certificate" \
  || fail "mismatched key: $(tail -n 3 "$T/load.out")"
cp "$P/rot/3/tls.key" "$S/.k" && mv -f "$S/.k" "$S/tls.key"
head -c 300 "$P/rot/4/tls.crt" >"$S/.c" && mv -f "$S/.c" "$S/tls.crt"
wait_for "$T/kd.log" "identity server: new files refused.*tls.crt" \
  && pass "truncated certificate refused with a log line" || fail "truncated cert not refused"
keeps_serving "$good" && pass "truncated certificate: handshakes continue with the previous one" \
  || fail "truncated cert: $(tail -n 3 "$T/load.out")"
cp "$P/rot/3/tls.crt" "$S/.c" && mv -f "$S/.c" "$S/tls.crt"

# Kubernetes Secret volume layout: files are symlinks through ..data.
mkdir "$S/..v3" && cp "$P/rot/3/tls.crt" "$P/rot/3/tls.key" "$S/ca.crt" "$S/..v3/"
ln -s ..v3 "$S/..data"
for f in tls.crt tls.key ca.crt; do ln -s "..data/$f" "$S/.$f.lnk" && mv -fT "$S/.$f.lnk" "$S/$f"; done
for i in 4 5 6; do
  mkdir "$S/..v$i" && cp "$P/rot/$i/tls.crt" "$P/rot/$i/tls.key" "$S/ca.crt" "$S/..v$i/"
  ln -s "..v$i" "$S/..data_tmp" && mv -fT "$S/..data_tmp" "$S/..data"
  rm -rf "$S/..v$((i - 1))"
  peer_sees "$(serial_of "$P/rot/$i/tls.crt")" && pass "..data swap $i: peer sees the new certificate" \
    || fail "..data swap $i: still $(tail -n 1 "$T/load.out")"
done

kill -HUP "$KD_PID"
wait_for "$T/kd.log" "SIGHUP: reloading every identity" && pass "SIGHUP reloads" || fail "no SIGHUP reload"
keeps_serving "$(serial_of "$P/rot/6/tls.crt")" && pass "serving after SIGHUP" || fail "after SIGHUP"

echo after >&7
wait_for "$T/long.out" "^after$" && pass "connection from before the rotations still carries data" \
  || fail "long-lived connection broke: $(cat "$T/long.err")"

touch "$T/stop"
wait "$LOAD" || true
total=$(grep -c "^OK " "$T/load.out" || true)
failed=$(grep -c "^FAIL" "$T/load.out" || true)
[ "$failed" -eq 0 ] && pass "zero failed handshakes out of $total" || fail "$failed of $((total + failed)) handshakes failed"
[ "$total" -ge 30 ] && pass "load did $total handshakes" || fail "only $total handshakes"
grep -q "failed" "$T/serve.log" && fail "keyhold serve logged failures: $(grep failed "$T/serve.log" | head -3)" \
  || pass "keyhold serve saw no failed handshake"
finish

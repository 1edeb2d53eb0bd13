#!/usr/bin/env bash
# Secure channels end to end (issue 12): two apps, each with its own
# keyholdd and identity from one CA, run `keyhold channel` and exchange
# messages over hops that see only ciphertext:
#   1. stdin/stdout pipes, XX and IK (key fetched with `keyhold channel pubkey`),
#      ChaChaPoly/SHA256 and AESGCM/BLAKE2b; both sides print the peer's SPIFFE ID
#   2. two chained socat relays (TCP), whose raw traffic dumps must not hold
#      the plaintext nor the identities
#   3. a mosquitto broker (MQTT topics both ways), whose spy subscriber must
#      not see the plaintext nor the identities
#   4. a faulty relay that reorders, duplicates, drops and flips bits:
#      reordered messages open, duplicates are CHANNEL_REPLAY, flipped ones
#      CHANNEL_TAMPERED, nothing crashes
#   5. refusals with reasons on both sides: foreign CA, wrong expected peer,
#      IK with a wrong responder key, a caller without the secure-channel
#      grant, a peer that stalls (deadline); keyholdd keeps serving.
. "$(dirname "$0")/lib.sh"
for c in socat mosquitto mosquitto_sub mosquitto_pub setpriv python3; do
  command -v "$c" >/dev/null || { echo "not ok - $c missing (tools/install-deps.sh installs it)"; exit 1; }
done
FAULT_RELAY=${FAULT_RELAY:-$KH_SOURCE_ROOT/tests/tools/fault_relay.py}
make_pki
P=$T/pki
mkdir -p "$T/a" "$T/b" "$T/c/client"
cp -r "$P/ids/client" "$T/a/" # spiffe://example.org/client
cp -r "$P/ids/server" "$T/b/" # spiffe://example.org/server
# A foreign CA's workload claiming the same SPIFFE ID as A.
cp "$P/rogue/client.crt" "$T/c/client/tls.crt"
cp "$P/rogue/client.key" "$T/c/client/tls.key"
cp "$P/other-ca/ca.crt" "$T/c/client/ca.crt"
start_keyholdd a "$T/a"
start_keyholdd b "$T/b"
start_keyholdd c "$T/c"
CLIENT=spiffe://example.org/client
SERVER=spiffe://example.org/server

ok_or() { if eval "$1"; then pass "$2"; else fail "$2: $3"; fi; }

# pair NAME "INITIATOR ARGS" "RESPONDER ARGS": the two over a pair of fifos
# (stdio transport); stderr in $T/NAME.init and $T/NAME.resp; sets rc_i, rc_r.
pair() {
  local name=$1
  rm -f "$T/$name.i2r" "$T/$name.r2i"
  mkfifo "$T/$name.i2r" "$T/$name.r2i"
  exec 5<>"$T/$name.i2r" 6<>"$T/$name.r2i"
  # shellcheck disable=SC2086
  timeout 30 "$KEYHOLD" channel respond $3 <&5 >&6 2>"$T/$name.resp" &
  local rp=$!
  rc_i=0
  # shellcheck disable=SC2086
  timeout 30 "$KEYHOLD" channel initiate $2 <&6 >&5 2>"$T/$name.init" || rc_i=$?
  rc_r=0
  wait "$rp" || rc_r=$?
  exec 5>&- 6>&-
}

# 1. Pipes.
pair xx "--sidecar $T/a.sock --expect-peer $SERVER --send hello-xx --send second --expect 2" \
  "--sidecar $T/b.sock --expect-peer $CLIENT --echo --expect 2"
ok_or '[ $rc_i -eq 0 ] && [ $rc_r -eq 0 ]' "XX over pipes: both exit 0" "init $rc_i resp $rc_r: $(cat "$T/xx.init" "$T/xx.resp")"
ok_or 'grep -q "^channel: Noise_XX_25519_ChaChaPoly_SHA256 peer=$SERVER local=$CLIENT$" "$T/xx.init"' \
  "XX: the initiator names the verified responder" "$(cat "$T/xx.init")"
ok_or 'grep -q "^channel: Noise_XX_25519_ChaChaPoly_SHA256 peer=$CLIENT local=$SERVER$" "$T/xx.resp"' \
  "XX: the responder names the verified initiator" "$(cat "$T/xx.resp")"
ok_or 'grep -qx "message: echo: hello-xx" "$T/xx.init" && grep -qx "message: echo: second" "$T/xx.init" && grep -qx "message: hello-xx" "$T/xx.resp"' \
  "XX: messages both ways" "$(cat "$T/xx.init")"

"$KEYHOLD" channel pubkey --sidecar "$T/b.sock" >"$T/b.pub" 2>"$T/pubkey.err"
ok_or 'grep -qE "^[0-9a-f]{64}$" "$T/b.pub" && [ "$(stat -c %a "$T/b/server/noise.key")" = 600 ]' \
  "pubkey prints B's static key; noise.key is 0600" "$(cat "$T/b.pub" "$T/pubkey.err")"
pair ik "--sidecar $T/a.sock --pattern IK --responder-key $(cat "$T/b.pub") --cipher AESGCM --hash BLAKE2b --send hello-ik --expect 1" \
  "--sidecar $T/b.sock --pattern IK --cipher AESGCM --hash BLAKE2b --echo --expect 1"
ok_or '[ $rc_i -eq 0 ] && grep -q "^channel: Noise_IK_25519_AESGCM_BLAKE2b peer=$SERVER" "$T/ik.init" && grep -qx "message: echo: hello-ik" "$T/ik.init" && grep -q "peer=$CLIENT" "$T/ik.resp"' \
  "IK with the fetched key, AESGCM/BLAKE2b" "$(cat "$T/ik.init" "$T/ik.resp")"

# 2. Two chained socat relays: initiator -> relay1 -> relay2 -> responder.
p_resp=$(free_port) p_r2=$(free_port) p_r1=$(free_port)
SECRET=relay-secret-$(od -An -N6 -tx1 /dev/urandom | tr -d ' ')
timeout 30 "$KEYHOLD" channel respond --sidecar "$T/b.sock" --via "tcp-listen:127.0.0.1:$p_resp" \
  --framing binary --echo --expect 3 2>"$T/relay.resp" &
rp=$!
wait_for "$T/relay.resp" "listening on"
bg socat -r "$T/relay2.fwd" -R "$T/relay2.back" "TCP-LISTEN:$p_r2,bind=127.0.0.1,reuseaddr" "TCP:127.0.0.1:$p_resp"
bg socat -r "$T/relay1.fwd" -R "$T/relay1.back" "TCP-LISTEN:$p_r1,bind=127.0.0.1,reuseaddr" "TCP:127.0.0.1:$p_r2"
for _ in $(seq 100); do
  ss -ltn | grep -q "127.0.0.1:$p_r1 " && ss -ltn | grep -q "127.0.0.1:$p_r2 " && break
  sleep 0.05
done
rc_i=0
timeout 30 "$KEYHOLD" channel initiate --sidecar "$T/a.sock" --via "tcp-connect:127.0.0.1:$p_r1" \
  --framing binary --expect-peer "$SERVER" --send "$SECRET-1" --send "$SECRET-2" --send "$SECRET-3" \
  --expect 3 2>"$T/relay.init" || rc_i=$?
rc_r=0
wait "$rp" || rc_r=$?
ok_or '[ $rc_i -eq 0 ] && [ $rc_r -eq 0 ] && grep -qx "message: echo: $SECRET-3" "$T/relay.init" && grep -q "peer=$CLIENT" "$T/relay.resp"' \
  "through two socat relays" "$(cat "$T/relay.init" "$T/relay.resp")"
ok_or '[ "$(cat "$T"/relay?.fwd "$T"/relay?.back | wc -c)" -gt 1000 ]' "the relays carried the traffic" \
  "dumps hold $(cat "$T"/relay?.* | wc -c) bytes"
ok_or '! grep -aq -e "$SECRET" -e "example.org" "$T"/relay1.* "$T"/relay2.*' \
  "the relays saw no plaintext and no identity" "found in the relay dumps"

# 3. Through a real MQTT broker: topics kh/i2r and kh/r2i, base64 lines.
mq=$(free_port)
cat >"$T/mosquitto.conf" <<EOF
listener $mq 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
EOF
bg mosquitto -c "$T/mosquitto.conf" 2>"$T/mosquitto.log"
for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$mq " && break; sleep 0.05; done
M=(-h 127.0.0.1 -p "$mq" -q 1)
# Persistent sessions first, so no message is lost to a subscriber not yet there.
for s in "kh-resp kh/i2r" "kh-init kh/r2i" "kh-spy kh/#"; do
  set -- $s
  timeout 10 mosquitto_sub "${M[@]}" -c -i "$1" -t "$2" -E
done
timeout 30 mosquitto_sub "${M[@]}" -c -i kh-spy -t 'kh/#' -C 7 >"$T/spy.txt" &
spy=$!
BSECRET=broker-secret-$(od -An -N6 -tx1 /dev/urandom | tr -d ' ')
(timeout 30 mosquitto_sub "${M[@]}" -c -i kh-resp -t kh/i2r -C 4 \
  | "$KEYHOLD" channel respond --sidecar "$T/b.sock" --echo --expect 2 2>"$T/mqtt.resp" \
  | timeout 30 mosquitto_pub "${M[@]}" -t kh/r2i -l) &
mr=$!
rc_i=0
(timeout 30 mosquitto_sub "${M[@]}" -c -i kh-init -t kh/r2i -C 3 \
  | "$KEYHOLD" channel initiate --sidecar "$T/a.sock" --expect-peer "$SERVER" \
    --send "$BSECRET-1" --send "$BSECRET-2" --expect 2 2>"$T/mqtt.init" \
  | timeout 30 mosquitto_pub "${M[@]}" -t kh/i2r -l) || rc_i=$?
wait "$mr" || true
wait "$spy" || true
ok_or 'grep -qx "message: echo: $BSECRET-2" "$T/mqtt.init" && grep -qx "message: $BSECRET-1" "$T/mqtt.resp" && grep -q "peer=$SERVER" "$T/mqtt.init" && grep -q "peer=$CLIENT" "$T/mqtt.resp"' \
  "through mosquitto, both sides verified" "$(cat "$T/mqtt.init" "$T/mqtt.resp")"
python3 - "$T/spy.txt" "$BSECRET" >"$T/spy.check" 2>&1 <<'PY'
import base64, sys
lines = [l.strip() for l in open(sys.argv[1]) if l.strip()]
blob = b"".join(base64.b64decode(l) for l in lines)
print(len(lines), len(blob), sys.argv[2].encode() in blob, b"example.org" in blob)
PY
ok_or 'grep -qx "7 [0-9]* False False" "$T/spy.check"' \
  "the broker carried 7 frames and no plaintext or identity" "$(cat "$T/spy.check")"

# 4. A faulty path (binary frames): after the two handshake frames, of every
# six messages 1-2 are swapped, 3 duplicated, 4 dropped, 5 bit-flipped.
p_resp=$(free_port) p_fault=$(free_port)
timeout 30 "$KEYHOLD" channel respond --sidecar "$T/b.sock" --via "tcp-listen:127.0.0.1:$p_resp" \
  --framing binary --expect 8 --out "$T/fault.got" 2>"$T/fault.resp" &
rp=$!
wait_for "$T/fault.resp" "listening on"
bg python3 "$FAULT_RELAY" "$p_fault" "$p_resp" 2 2>"$T/fault.relay"
wait_for "$T/fault.relay" "listening"
sends=()
for i in $(seq 12); do sends+=(--send "m$i"); done
rc_i=0
timeout 30 "$KEYHOLD" channel initiate --sidecar "$T/a.sock" --via "tcp-connect:127.0.0.1:$p_fault" \
  --framing binary --expect-peer "$SERVER" "${sends[@]}" --expect 0 2>"$T/fault.init" || rc_i=$?
rc_r=0
wait "$rp" || rc_r=$?
ok_or '[ $rc_r -eq 0 ] && [ "$(tr "\n" " " <"$T/fault.got")" = "m2 m1 m3 m6 m8 m7 m9 m12 " ]' \
  "faulty path: reordered messages open, the dropped one is just missing" \
  "rc $rc_r, opened: $(tr '\n' ' ' <"$T/fault.got"); $(cat "$T/fault.resp")"
ok_or '[ "$(grep -c "^reject: CHANNEL_REPLAY" "$T/fault.resp")" = 2 ] && [ "$(grep -c "^reject: CHANNEL_TAMPERED" "$T/fault.resp")" = 2 ]' \
  "faulty path: 2 duplicates CHANNEL_REPLAY, 2 flipped CHANNEL_TAMPERED" "$(cat "$T/fault.resp")"

# 5. Refusals, each with its reason on both sides.
pair foreign "--sidecar $T/c.sock --expect-peer $SERVER --send x --expect 1 --timeout 5000" \
  "--sidecar $T/b.sock --expect 1 --timeout 5000"
ok_or '[ $rc_i -ne 0 ] && grep -q "handshake: UNAUTHENTICATED" "$T/foreign.init" && grep -q "refused the channel" "$T/foreign.resp"' \
  "foreign CA: refused on both sides" "$(cat "$T/foreign.init" "$T/foreign.resp")"
pair wrongpeer "--sidecar $T/a.sock --expect-peer spiffe://example.org/billing --send x --expect 1 --timeout 5000" \
  "--sidecar $T/b.sock --expect 1 --timeout 5000"
ok_or '[ $rc_i -ne 0 ] && grep -q "spiffe://example.org/server is not one of the 1 expected peers" "$T/wrongpeer.init" && grep -q "refused the channel: peer spiffe://example.org/server is not one" "$T/wrongpeer.resp"' \
  "wrong expected peer: refused, the reason reaches the responder" "$(cat "$T/wrongpeer.init" "$T/wrongpeer.resp")"
pair respwrong "--sidecar $T/a.sock --send x --expect 1 --timeout 5000" \
  "--sidecar $T/b.sock --expect-peer spiffe://example.org/billing --expect 1 --timeout 5000"
ok_or '[ $rc_r -ne 0 ] && grep -q "$CLIENT is not one of the 1 expected peers" "$T/respwrong.resp" && grep -q "refused the channel: peer $CLIENT is not one" "$T/respwrong.init"' \
  "responder expecting another peer: refused after the last message, the initiator learns why" \
  "$(cat "$T/respwrong.init" "$T/respwrong.resp")"
pair ikbad "--sidecar $T/a.sock --pattern IK --responder-key $(od -An -N32 -tx1 /dev/urandom | tr -d ' \n') --send x --expect 1 --timeout 5000" \
  "--sidecar $T/b.sock --pattern IK --expect 1 --timeout 5000"
ok_or '[ $rc_i -ne 0 ] && [ $rc_r -ne 0 ] && grep -q "does not authenticate" "$T/ikbad.resp" && grep -q "refused the channel" "$T/ikbad.init"' \
  "IK with a wrong responder key: refused on both sides" "$(cat "$T/ikbad.init" "$T/ikbad.resp")"
mkfifo "$T/stall"
exec 8<>"$T/stall"
rc_r=0
timeout 20 "$KEYHOLD" channel respond --sidecar "$T/b.sock" --timeout 1500 <&8 >/dev/null 2>"$T/stall.resp" || rc_r=$?
exec 8>&-
ok_or '[ $rc_r -eq 1 ] && grep -q "DEADLINE_EXCEEDED" "$T/stall.resp"' "a stalled peer ends at the deadline" \
  "rc $rc_r: $(cat "$T/stall.resp")"

# A caller without the grant: uid nobody may run TLS offload for "server"
# but channels only for "client".
NOBODY=65534
chmod 755 "$T"
cat >"$T/policy.yaml" <<YAML
socket:
  path: $T/d.sock
  mode: "0660"
  group: $NOBODY
identities_dir: $P/ids
identities:
  server:
    callers: {uids: [$NOBODY]}
    operations: [tls-offload]
  client:
    callers: {uids: [$NOBODY]}
    operations: [secure-channel]
YAML
start_keyholdd d "$P/ids" --policy "$T/policy.yaml"
NB=(setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups --)
rc=0
"${NB[@]}" "$KEYHOLD" channel respond --sidecar "$T/d.sock" --identity "$SERVER" --timeout 1000 \
  </dev/null 2>"$T/nogrant.err" || rc=$?
ok_or '[ $rc -eq 1 ] && grep -q "PERMISSION_DENIED.*needs the .secure-channel. grant" "$T/nogrant.err"' \
  "a caller without the secure-channel grant is refused" "$(cat "$T/nogrant.err")"
rc=0
"${NB[@]}" "$KEYHOLD" channel respond --sidecar "$T/d.sock" --identity "$CLIENT" --timeout 1000 \
  </dev/null 2>"$T/grant.err" || rc=$?
ok_or 'grep -q "transport closed before the handshake" "$T/grant.err"' \
  "with the grant the same caller gets past the start" "$(cat "$T/grant.err")"

# Still serving after all of it.
pair after "--sidecar $T/a.sock --send still --expect 1" "--sidecar $T/b.sock --echo --expect 1"
ok_or 'grep -qx "message: echo: still" "$T/after.init"' "both keyholdds still serve" "$(cat "$T/after.init")"
ok_or '! grep -aq -e "$SECRET" -e "$BSECRET" "$T"/a.log "$T"/b.log' "no payload in keyholdd's logs" "found"
finish

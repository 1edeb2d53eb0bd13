#!/usr/bin/env bash
# Hybrid RSA envelopes (an AES-256-GCM message whose key is wrapped with
# the identity's RSA key), opened in keyholdd: the key wrapped by `openssl
# pkeyutl` (RSA-OAEP-SHA256), the message sealed by python3-cryptography,
# carried through mosquitto, opened by `keyhold open --envelope`. PKCS#1
# v1.5 envelopes are refused unless the policy lists `legacy-pkcs1v15` for
# the identity; where it does they open, and a wrong padding, a wrong key
# length and an altered message all fail with one and the same error
# (implicit rejection: no padding oracle). An identity without an RSA key
# and a caller without the grant are refused.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
MK="$(dirname "$0")/../tools/make_envelope.py"
KEYTYPES="rsa" make_pki
P=$T/pki
cat >"$T/strict.yaml" <<YAML
identities:
  rsa:
    callers: {uids: [0]}
    operations: [open-sealed]
  client:
    callers: {uids: [0]}
    operations: [open-sealed]
YAML
cat >"$T/legacy.yaml" <<YAML
identities:
  rsa:
    callers: {uids: [0]}
    operations: [open-sealed, legacy-pkcs1v15]
YAML
start_keyholdd strict "$P/ids" --policy "$T/strict.yaml"
mkdir -p "$T/ids2" && cp -r "$P/ids/rsa" "$T/ids2/"
start_keyholdd legacy "$T/ids2" --policy "$T/legacy.yaml"
RSA=spiffe://example.org/rsa
openssl x509 -in "$P/ids/rsa/tls.crt" -pubkey -noout >"$T/pub.pem"
SECRET="order 4711: ship to Lyon $(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"

wrap() { # wrap MODE OUT: a fresh AES-256 key in $T/key.bin, wrapped with openssl into OUT
  head -c 32 /dev/urandom >"$T/key.bin"
  local opt=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256)
  [ "$1" = 2 ] && opt=(-pkeyopt rsa_padding_mode:pkcs1)
  openssl pkeyutl -encrypt -pubin -inkey "$T/pub.pem" -in "$T/key.bin" -out "$2" "${opt[@]}"
}
opened() { # opened SOCK FILE NAME: opens to $SECRET
  local out
  out=$("$KEYHOLD" open --envelope --sidecar "$1" --identity "$RSA" --in "$2" 2>"$T/$3.err") &&
    [ "$out" = "$SECRET" ]
}

# 1. RSA-OAEP-SHA256 through the broker.
wrap 1 "$T/w1.bin" && $PY "$MK" 1 "$T/w1.bin" "$T/key.bin" "$SECRET" "$T/oaep.env"
mq=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$mq" \
  >"$T/mosquitto.conf"
bg mosquitto -c "$T/mosquitto.conf" 2>"$T/mosquitto.log"
for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$mq " && break; sleep 0.05; done
timeout 20 mosquitto_sub -h 127.0.0.1 -p "$mq" -t kh/env -C 1 -N >"$T/got.env" &
SUB=$!
sleep 0.5
mosquitto_pub -h 127.0.0.1 -p "$mq" -t kh/env -f "$T/oaep.env"
wait "$SUB" || true
! grep -qa "ship to Lyon" "$T/got.env" && opened "$T/strict.sock" "$T/got.env" oaep &&
  pass "OAEP envelope (openssl pkeyutl + python3-cryptography) through mosquitto, opened in keyholdd" ||
  fail "OAEP: $(cat "$T/oaep.err")"

# 2. PKCS#1 v1.5: refused where the policy does not enable it, opened where it does.
wrap 2 "$T/w2.bin" && $PY "$MK" 2 "$T/w2.bin" "$T/key.bin" "$SECRET" "$T/v15.env"
opened "$T/strict.sock" "$T/v15.env" strict-v15 && fail "v1.5 opened without legacy-pkcs1v15" ||
  { grep -q "PKCS#1 v1.5 envelopes are not enabled for identity 'rsa' .*legacy-pkcs1v15.*\[PERMISSION_DENIED\]" "$T/strict-v15.err" &&
    pass "v1.5 refused unless the policy lists legacy-pkcs1v15" || fail "strict v1.5: $(cat "$T/strict-v15.err")"; }
opened "$T/legacy.sock" "$T/v15.env" legacy-v15 && pass "v1.5 opened where the policy enables it" ||
  fail "legacy v1.5: $(cat "$T/legacy-v15.err")"

# 3. Implicit rejection: every way a v1.5 envelope can be wrong fails alike.
head -c 256 /dev/urandom >"$T/junk.bin"
$PY "$MK" 2 "$T/junk.bin" "$T/key.bin" "$SECRET" "$T/badpad.env"
head -c 31 /dev/urandom >"$T/short.key"
openssl pkeyutl -encrypt -pubin -inkey "$T/pub.pem" -in "$T/short.key" -out "$T/w3.bin" -pkeyopt rsa_padding_mode:pkcs1
$PY "$MK" 2 "$T/w3.bin" "$T/key.bin" "$SECRET" "$T/badlen.env"
cp "$T/v15.env" "$T/flip.env"
printf '\x01' | dd of="$T/flip.env" bs=1 seek=$(( $(stat -c %s "$T/flip.env") - 3 )) conv=notrunc 2>/dev/null
for c in badpad badlen flip; do
  opened "$T/legacy.sock" "$T/$c.env" "legacy-$c" && fail "$c opened"
done
msg="the envelope does not open with $RSA's key: altered, truncated, or for another key [INVALID_ARGUMENT]"
ok=1
for c in badpad badlen flip; do [ "$(cat "$T/legacy-$c.err")" = "keyhold: open: sidecar: $msg" ] || ok=0; done
[ $ok = 1 ] && pass "wrong padding, wrong key length and an altered message: one error, no oracle" ||
  fail "errors differ: $(cat "$T"/legacy-bad*.err "$T/legacy-flip.err")"

# 4. What else must fail.
cp "$T/oaep.env" "$T/oaep-flip.env"
printf '\x01' | dd of="$T/oaep-flip.env" bs=1 seek=20 conv=notrunc 2>/dev/null
opened "$T/strict.sock" "$T/oaep-flip.env" oaep-flip && fail "altered OAEP key opened" ||
  { grep -qF "$msg" "$T/oaep-flip.err" && pass "altered OAEP wrapped key: does not open" || fail "oaep-flip: $(cat "$T/oaep-flip.err")"; }
out=$("$KEYHOLD" open --envelope --sidecar "$T/strict.sock" --identity spiffe://example.org/client \
  --in "$T/oaep.env" 2>&1) && fail "opened with a P-256 identity" ||
  { [[ "$out" == *"identity 'client' has no RSA key"*FAILED_PRECONDITION* ]] &&
    pass "an identity without an RSA key: FAILED_PRECONDITION" || fail "client: $out"; }
out=$("$KEYHOLD" open --envelope --sidecar "$T/legacy.sock" --identity "$RSA" --in "$T/pub.pem" 2>&1) &&
  fail "garbage opened" || { [[ "$out" == *"not an envelope"* ]] && pass "not an envelope: refused" || fail "garbage: $out"; }
grep -q "key-op op=open_envelope caller_uid=0 .*identity=$RSA result=OK" "$T/strict.log" &&
  ! grep -qa "ship to Lyon" "$T/strict.log" "$T/legacy.log" && pass "logged, never the message" ||
  fail "log"
finish

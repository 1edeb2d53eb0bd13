#!/usr/bin/env bash
# Keys on a PKCS#11 token (SoftHSM2): tls.key holds an RFC 7512 URI, the
# key is generated on the token by pkcs11-tool and never leaves it.
#   - P-256 and RSA token keys: offloaded mTLS handshakes with openssl
#     s_server (client) and openssl s_client (server), S2A v2 signing
#     (s2a_v2_peer), a DPoP proof checked by python3-jwcrypto, and an
#     RSA-OAEP envelope unwrapped on the token;
#   - the module runs in p11-kit-remote, never in keyholdd (no OpenSSL or
#     SoftHSM in keyholdd's memory map), under the sandbox;
#   - rotation from one token object to another, and a rotation to a
#     missing object refused while the old key keeps signing;
#   - load errors: wrong PIN, missing object, missing token, unknown module,
#     a key that is not the certificate's, pin-value, a readable PIN file;
#   - a token that stalls (x-timeout-ms) or fails (CKR_DEVICE_ERROR), through
#     tests/tools/p11_fault: a clear handshake error, not a hang, while a
#     file-key identity keeps serving; the token works again afterwards.
source "$(dirname "$0")/lib.sh"
: "${S2A_V2_PEER:?}" "${KH_P11_FAULT:?}"
PY=/usr/bin/python3
for t in softhsm2-util pkcs11-tool /usr/libexec/p11-kit/p11-kit-remote; do
  command -v "$t" >/dev/null || { echo "not ok - $t missing: run tools/install-deps.sh"; exit 1; }
done
MOD=$(sed -n 's/^module: *//p' /usr/share/p11-kit/modules/softhsm2.module)
make_pki
P=$T/pki

export SOFTHSM2_CONF=$T/softhsm2.conf
mkdir -p "$T/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T" \
  >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label keyhold --so-pin 1234 --pin 4711 >/dev/null
tool() { pkcs11-tool --module "$MOD" --token-label keyhold --login --pin 4711 "$@"; }
tool --keypairgen --key-type EC:prime256v1 --label ec-1 --id 01 >/dev/null
tool --keypairgen --key-type EC:prime256v1 --label ec-2 --id 02 >/dev/null
tool --keypairgen --key-type rsa:2048 --label rsa-1 --id 03 >/dev/null
printf '4711\n' >"$T/pin" && chmod 600 "$T/pin"
printf '0000\n' >"$T/badpin" && chmod 600 "$T/badpin"

# token_cert ID OUT NAME: a certificate from the test CA for the token's
# public key ID (the private key never leaves the token: -force_pubkey).
token_cert() {
  pkcs11-tool --module "$MOD" --token-label keyhold --read-object --type pubkey --id "$1" \
    -o "$T/pub.der" >/dev/null
  openssl pkey -pubin -inform DER -in "$T/pub.der" -out "$T/pub.pem"
  openssl req -new -key "$P/ca/ca.key" -subj "/CN=$3" -out "$T/csr.pem" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:spiffe://example.org/%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$3" >"$T/ext"
  openssl x509 -req -in "$T/csr.pem" -CA "$P/ca/ca.crt" -CAkey "$P/ca/ca.key" -CAcreateserial \
    -days 30 -extfile "$T/ext" -force_pubkey "$T/pub.pem" -out "$2" 2>/dev/null
}
uri() { # uri OBJECT [QUERY]: the token object's URI, PIN from $T/pin
  echo "pkcs11:token=keyhold;object=$1;type=private?module-name=softhsm2&pin-source=file:$T/pin${2:-}"
}
# token_id DIR NAME ID OBJECT: an identity directory whose key is on the token.
token_id() {
  mkdir -p "$1"
  token_cert "$3" "$1/tls.crt" "$2"
  cp "$P/ca/ca.crt" "$1/ca.crt"
  uri "$4" >"$1/tls.key" && chmod 600 "$1/tls.key"
}
IDS=$T/ids
mkdir -p "$IDS" && cp -r "$P/ids/client" "$IDS/"
token_id "$IDS/hsm-ec" hsm-ec 01 ec-1
token_id "$IDS/hsm-rsa" hsm-rsa 03 rsa-1

ALL="[tls-offload, sign, validate, ticket-keys, dpop, open-sealed]"
cat >"$T/policy.yaml" <<YAML
identities:
  client: {callers: {uids: [0]}}
  hsm-ec: {callers: {uids: [0]}, operations: $ALL}
  hsm-rsa: {callers: {uids: [0]}, operations: [tls-offload, sign, validate, ticket-keys, open-sealed, legacy-pkcs1v15]}
YAML
start_keyholdd kd "$IDS" --policy "$T/policy.yaml"
KD=${PIDS[-1]}
grep -q "hsm-ec/tls.key: ECDSA P-256 key on token, 4 sessions" "$T/kd.log" &&
  grep -q "hsm-rsa/tls.key: RSA key on token" "$T/kd.log" &&
  pass "keyholdd loads P-256 and RSA keys from the token" || fail "token keys: $(cat "$T/kd.log")"
# Sanitizer builds run without the filter by default (LeakSanitizer's exit check).
if asan_build; then
  grep -q "sandbox disabled" "$T/kd.log" && pass "sanitizer build: sandbox off, as by default" || fail "sandbox state"
else
  grep -q "seccomp filter on" "$T/kd.log" && pass "under the sandbox" || fail "sandbox not on"
fi
maps=$(cat "/proc/$KD/maps")
kids=$(ps -o comm= --ppid "$KD" || true)
if ! grep -qE 'libsofthsm2|libcrypto\.so\.3' <<<"$maps" && grep -q '^p11-kit-remote' <<<"$kids"; then
  pass "SoftHSM and OpenSSL run in a p11-kit-remote child, never in keyholdd"
else
  fail "keyholdd maps: $(grep -E 'softhsm|libcrypto' <<<"$maps" | head -3); children: $kids"
fi

start_rev_server
served() { # served NAME ID: `keyhold connect` as ID to s_server, which verified our token cert
  echo "hello-$1" | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity "$2" \
    --expect-peer spiffe://example.org/peer-server "127.0.0.1:$port" >"$T/$1.out" 2>"$T/$1.err" &&
    grep -q "$(echo "hello-$1" | rev)" "$T/$1.out"
}
for kt in ec rsa; do
  served "c-$kt" "spiffe://example.org/hsm-$kt" &&
    pass "$kt token key: client handshake with openssl s_server -Verify 1, data both ways" ||
    fail "$kt client handshake: $(cat "$T/c-$kt.err")"
done
grep -q "CN = hsm-ec" "$T/srv.out" && grep -q "CN = hsm-rsa" "$T/srv.out" &&
  pass "s_server verified both token-backed client certificates" || fail "s_server saw: $(grep CN "$T/srv.out")"

# Server side: keyhold serve with the token key, openssl s_client verifying it.
start_serve serve --sidecar "$T/kd.sock" --identity spiffe://example.org/hsm-ec --echo
serial_of() { openssl x509 -noout -serial -in "$1" | cut -d= -f2; }
s_client_serial() { # the serial of the certificate `keyhold serve` presents
  timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -servername localhost \
    -cert "$P/peer/client.crt" -key "$P/peer/client.key" -CAfile "$P/ca/ca.crt" \
    -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
[ "$(s_client_serial)" = "$(serial_of "$IDS/hsm-ec/tls.crt")" ] &&
  pass "server handshake with openssl s_client, token key signs CertificateVerify" ||
  fail "s_client -> keyhold serve (hsm-ec): $(tail -3 "$T/serve.log")"

# S2A v2: the client's own TLS stack, CertificateVerify signed on the token.
for kt in ec rsa; do
  timeout 20 "$S2A_V2_PEER" --socket "$T/kd.sock" --identity "spiffe://example.org/hsm-$kt" \
    --connect "$port" --server-name localhost --message "v2-$kt" >"$T/v2.out" 2>"$T/v2.err" &&
    grep -q "got: $(echo "v2-$kt" | rev)" "$T/v2.out" &&
    pass "S2A v2 $kt: OffloadPrivateKeyOperation signs on the token" ||
    fail "S2A v2 $kt: $(cat "$T/v2.out" "$T/v2.err")"
done

# DPoP with the P-256 token key, verified by jwcrypto.
HTU=https://as.example.org/token
jkt=$("$KEYHOLD" dpop --sidecar "$T/kd.sock" --identity spiffe://example.org/hsm-ec --thumbprint)
"$KEYHOLD" dpop --sidecar "$T/kd.sock" --identity spiffe://example.org/hsm-ec --htm POST \
  --htu "$HTU" >"$T/proof.jws" 2>"$T/dpop.err" &&
  $PY "$(dirname "$0")/../tools/dpop_verify.py" "$T/proof.jws" "$jkt" POST "$HTU" >/dev/null 2>"$T/v.err" &&
  pass "DPoP ES256 proof signed on the token verifies with jwcrypto" ||
  fail "DPoP: $(cat "$T/dpop.err" "$T/v.err")"

# Envelopes with the RSA token key. SoftHSM 2.6 does RSA-OAEP with SHA-1
# only: an OAEP-SHA-256 envelope gets that reason, not "altered"; a PKCS#1
# v1.5 envelope (legacy, enabled for hsm-rsa) is unwrapped by the raw RSA
# operation on the token and checked in constant time in keyholdd.
openssl x509 -in "$IDS/hsm-rsa/tls.crt" -pubkey -noout >"$T/rsa-pub.pem"
envelope() { # envelope MODE OUT PADDING-OPTS...
  local mode=$1 out=$2
  shift 2
  head -c 32 /dev/urandom >"$T/key.bin"
  openssl pkeyutl -encrypt -pubin -inkey "$T/rsa-pub.pem" -in "$T/key.bin" -out "$T/w.bin" "$@"
  $PY "$(dirname "$0")/../tools/make_envelope.py" "$mode" "$T/w.bin" "$T/key.bin" "sealed for the hsm" "$out"
}
open_env() { "$KEYHOLD" open --envelope --sidecar "$T/kd.sock" --identity spiffe://example.org/hsm-rsa --in "$1"; }
envelope 1 "$T/oaep.env" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
open_env "$T/oaep.env" >/dev/null 2>"$T/oaep.err" && fail "SoftHSM opened OAEP-SHA-256 (test assumption broken)" ||
  { grep -q "the token does not do RSA-OAEP with SHA-256 (CKR_ARGUMENTS_BAD)" "$T/oaep.err" &&
    pass "OAEP-SHA-256 envelope on SoftHSM: the token's limit is named, not 'altered'" ||
    fail "OAEP on the token: $(cat "$T/oaep.err")"; }
envelope 2 "$T/v15.env" -pkeyopt rsa_padding_mode:pkcs1
out=$(open_env "$T/v15.env" 2>"$T/v15.err") && [ "$out" = "sealed for the hsm" ] &&
  pass "PKCS#1 v1.5 envelope unwrapped by raw RSA on the token" || fail "v1.5 on the token: $(cat "$T/v15.err")"
printf 'X' | dd of="$T/v15.env" bs=1 seek=40 conv=notrunc 2>/dev/null
open_env "$T/v15.env" >/dev/null 2>"$T/v15b.err" && fail "an altered v1.5 envelope opened" ||
  { grep -q "does not open with" "$T/v15b.err" && pass "an altered v1.5 envelope: the one implicit-rejection error" ||
    fail "altered v1.5: $(cat "$T/v15b.err")"; }

# Rotation: the identity moves to another token object (new URI, new certificate).
old=$(serial_of "$IDS/hsm-ec/tls.crt")
token_cert 02 "$T/rot.crt" hsm-ec
uri ec-2 >"$T/rot.key" && chmod 600 "$T/rot.key"
mv "$T/rot.key" "$IDS/hsm-ec/tls.key" && mv "$T/rot.crt" "$IDS/hsm-ec/tls.crt"
new=$(serial_of "$IDS/hsm-ec/tls.crt")
got=""
for _ in $(seq 60); do
  got=$(s_client_serial)
  [ "$got" = "$new" ] && break
  sleep 0.1
done
[ "$got" = "$new" ] && [ "$new" != "$old" ] &&
  pass "rotation from token object ec-1 to ec-2: s_client sees the new certificate" ||
  fail "rotation: serial $got, wanted $new (old $old): $(tail -5 "$T/kd.log")"
# A rotation naming an object that is not there is refused; ec-2 keeps signing.
before=$(grep -c "refused\|keeping" "$T/kd.log" || true)
uri nope >"$T/bad.key" && chmod 600 "$T/bad.key" && mv "$T/bad.key" "$IDS/hsm-ec/tls.key"
for _ in $(seq 60); do
  [ "$(grep -c "refused\|keeping" "$T/kd.log" || true)" -gt "$before" ] && break
  sleep 0.1
done
grep -q "no private key on the token matches" "$T/kd.log" && [ "$(s_client_serial)" = "$new" ] &&
  pass "rotation to a missing object refused with its reason; the previous key keeps signing" ||
  fail "bad rotation: $(tail -5 "$T/kd.log")"

# Load errors: keyholdd refuses to start and says why.
refused() { # refused NAME PATTERN: keyholdd on $T/bad exits non-zero with PATTERN
  local rc=0
  timeout 20 "$KEYHOLDD" --socket "$T/bad.sock" --identities "$T/bad" >/dev/null 2>"$T/$1.err" || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q -- "$2" "$T/$1.err"
}
bad_id() { # bad_id TLS_KEY_LINE [CERT_ID]: $T/bad holds one token identity
  rm -rf "$T/bad" && mkdir -p "$T/bad/x" && cp "$IDS/hsm-rsa/ca.crt" "$T/bad/x/"
  token_cert "${2:-01}" "$T/bad/x/tls.crt" x
  echo "$1" >"$T/bad/x/tls.key" && chmod 600 "$T/bad/x/tls.key"
}
bad_id "pkcs11:token=keyhold;object=ec-1;type=private?module-name=softhsm2&pin-source=file:$T/badpin"
refused pin "C_Login: CKR_PIN_INCORRECT" && pass "wrong PIN: CKR_PIN_INCORRECT" || fail "wrong PIN: $(cat "$T/pin.err")"
bad_id "$(uri gone)"
refused obj "no private key on the token matches" && pass "missing object: named" ||
  fail "missing object: $(cat "$T/obj.err")"
bad_id "pkcs11:token=elsewhere;object=ec-1?module-name=softhsm2&pin-source=file:$T/pin"
refused tok "no token matching the PKCS#11 URI" && pass "missing token: named" || fail "missing token: $(cat "$T/tok.err")"
bad_id "pkcs11:token=keyhold;object=ec-1?module-name=nosuch&pin-source=file:$T/pin"
refused mod "no PKCS#11 module registered with p11-kit as nosuch (there are: .*softhsm2" &&
  pass "unknown module: the registered ones are listed" || fail "unknown module: $(cat "$T/mod.err")"
bad_id "$(uri ec-2)" 01
refused mismatch "does not match the tls.crt leaf" && pass "token key that is not the certificate's: refused at load" ||
  fail "mismatch: $(cat "$T/mismatch.err")"
bad_id "$(uri rsa-1)" 01
refused type "the token key is RSA, tls.crt certifies ECDSA P-256" && pass "key type differs from the certificate's: refused" ||
  fail "type: $(cat "$T/type.err")"
bad_id "pkcs11:token=keyhold;object=ec-1?module-name=softhsm2&pin-value=4711"
refused pinvalue "pin-value is not accepted" && pass "pin-value in the URI: refused" || fail "pin-value: $(cat "$T/pinvalue.err")"
chmod 640 "$T/pin"
bad_id "$(uri ec-1)"
refused pinmode "readable by group or others" && pass "group-readable PIN file: refused" || fail "pin mode: $(cat "$T/pinmode.err")"
chmod 600 "$T/pin"

# A token that stalls or fails: through p11_fault (module-path), 500 ms timeout.
FIDS=$T/fids
mkdir -p "$FIDS" && cp -r "$P/ids/client" "$FIDS/"
mkdir -p "$FIDS/slow" && cp "$IDS/hsm-rsa/ca.crt" "$FIDS/slow/"
token_cert 03 "$FIDS/slow/tls.crt" slow
echo "pkcs11:token=keyhold;object=rsa-1;type=private?module-path=$KH_P11_FAULT&pin-source=file:$T/pin&x-timeout-ms=500&x-sessions=2" \
  >"$FIDS/slow/tls.key" && chmod 600 "$FIDS/slow/tls.key"
: >"$T/fault"
KH_P11_FAULT_MODULE=$MOD KH_P11_FAULT_FILE=$T/fault start_keyholdd fkd "$FIDS"
# A peer that issues no tickets: every handshake is a full one and signs.
nport=$(free_port)
mkfifo "$T/nt.in"
exec 8<>"$T/nt.in"
bg openssl s_server -tls1_3 -num_tickets 0 -Verify 1 -verify_return_error -CAfile "$P/ca/ca.crt" \
  -cert "$P/peer/server.crt" -key "$P/peer/server.key" -accept "127.0.0.1:$nport" -rev \
  <"$T/nt.in" >"$T/nt.out" 2>&1
wait_for "$T/nt.out" ACCEPT
fconnect() { # fconnect NAME ID: one full handshake through fkd
  echo "hi-$1" | timeout 15 "$KEYHOLD" connect --sidecar "$T/fkd.sock" --identity "$2" \
    --expect-peer spiffe://example.org/peer-server "127.0.0.1:$nport" >"$T/$1.out" 2>"$T/$1.err" &&
    grep -q "$(echo "hi-$1" | rev)" "$T/$1.out"
}
fconnect f0 spiffe://example.org/slow && pass "through the fault module: handshake ok" ||
  fail "fault module baseline: $(cat "$T/f0.err")"
echo "delay 3000" >"$T/fault"
t0=$(date +%s%N)
rc=0
fconnect f1 spiffe://example.org/slow || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$rc" -ne 0 ] && grep -q "did not answer within 500 ms" "$T/f1.err" && [ "$ms" -lt 2500 ] &&
  pass "a stalled token: the handshake fails in ${ms} ms with 'did not answer within 500 ms'" ||
  fail "stalled token: rc=$rc ${ms} ms: $(cat "$T/f1.err")"
fconnect f2 spiffe://example.org/client && pass "a file-key identity keeps serving while the token stalls" ||
  fail "file identity during the stall: $(cat "$T/f2.err")"
echo "fail" >"$T/fault"
sleep 3 # the stalled calls return
fconnect f3 spiffe://example.org/slow && fail "a failing token still signed" ||
  { grep -q "C_Sign failed: CKR_DEVICE_ERROR" "$T/f3.err" && pass "a failing token: CKR_DEVICE_ERROR in the handshake error" ||
    fail "failing token: $(cat "$T/f3.err")"; }
: >"$T/fault"
fconnect f4 spiffe://example.org/slow && pass "the token works again once it answers" || fail "recovery: $(cat "$T/f4.err")"
grep -q "did not answer within 500 ms" "$T/fkd.log" && ! grep -q 4711 "$T/fkd.log" "$T/kd.log" &&
  pass "keyholdd logs the token errors, never the PIN" || fail "fkd log: $(tail -5 "$T/fkd.log")"
finish

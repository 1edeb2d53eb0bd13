#!/usr/bin/env bash
# Sealed messages opened for the workload (keyhold.v1.KeyOperations): a
# message sealed by an independent implementation (Debian's python3-nacl,
# SealedBox) and one sealed by `keyhold seal` travel through a real broker
# (mosquitto) and are opened by the app through keyholdd, the broker seeing
# only ciphertext; altered, truncated, mis-addressed and oversized messages
# fail with a clear error; a caller without the `open-sealed` grant is
# refused; the log names caller, identity and result and never the message.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "not ok - must run as root to switch uids with setpriv"; exit 1; }
for c in mosquitto mosquitto_sub mosquitto_pub setpriv; do
  command -v "$c" >/dev/null || { echo "not ok - $c missing: run tools/install-deps.sh"; exit 1; }
done
PY=/usr/bin/python3
make_pki
P=$T/pki
chmod 755 "$T"
NOBODY=65534
cat >"$T/policy.yaml" <<YAML
identities:
  client:
    callers:
      uids: [0]
    operations: [open-sealed]
  server:
    callers:
      uids: [0, $NOBODY]
    operations: [tls-offload]
YAML
start_keyholdd kd "$P/ids" --policy "$T/policy.yaml" --socket-group $NOBODY
K=("$KEYHOLD")
S=(--sidecar "$T/kd.sock")
CLIENT=spiffe://example.org/client

pub=$("${K[@]}" pubkey "${S[@]}" --identity $CLIENT) && [ ${#pub} = 64 ] &&
  pass "pubkey: the sealing key ($pub)" || fail "pubkey: '$pub'"
[ "$pub" != "$("${K[@]}" channel pubkey "${S[@]}" --identity $CLIENT 2>/dev/null)" ] &&
  pass "the sealing key is not the Noise key" || fail "sealing key = noise key"
[ -f "$P/ids/client/seal.key" ] && [ "$(stat -c %a "$P/ids/client/seal.key")" = 600 ] &&
  pass "seal.key kept beside the certificate, mode 0600" || fail "seal.key"

# The broker.
mq=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$mq" \
  >"$T/mosquitto.conf"
bg mosquitto -c "$T/mosquitto.conf" 2>"$T/mosquitto.log"
for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$mq " && break; sleep 0.05; done
M=(-h 127.0.0.1 -p "$mq" -q 1)
SECRET="wire transfer 4711 to account DE00-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"

# 1. Sealed by python3-nacl, through the broker, opened through keyholdd.
timeout 20 mosquitto_sub "${M[@]}" -t kh/sealed -C 2 -N -F '%p' >"$T/spy.bin" &
SPY=$!
timeout 20 mosquitto_sub "${M[@]}" -t kh/sealed -C 1 -N >"$T/got-nacl.bin" &
SUB=$!
sleep 0.5
$PY - "$pub" "$SECRET" >"$T/nacl.bin" <<'PYEOF'
import sys
from nacl.public import PublicKey, SealedBox
sys.stdout.buffer.write(SealedBox(PublicKey(bytes.fromhex(sys.argv[1]))).encrypt(sys.argv[2].encode()))
PYEOF
mosquitto_pub "${M[@]}" -t kh/sealed -f "$T/nacl.bin"
wait "$SUB" || true
out=$("${K[@]}" open "${S[@]}" --identity $CLIENT --in "$T/got-nacl.bin" 2>"$T/open1.err") &&
  [ "$out" = "$SECRET" ] && pass "python3-nacl SealedBox -> mosquitto -> keyhold open" ||
  fail "nacl open: '$out' $(cat "$T/open1.err")"

# 2. Sealed by keyhold seal (no sidecar needed), the same way.
printf '%s' "$SECRET" | "${K[@]}" seal --to "$pub" >"$T/cli.bin"
timeout 20 mosquitto_sub "${M[@]}" -t kh/sealed -C 1 -N >"$T/got-cli.bin" &
SUB=$!
sleep 0.5
mosquitto_pub "${M[@]}" -t kh/sealed -f "$T/cli.bin"
wait "$SUB" || true
wait "$SPY" || true
out=$("${K[@]}" open "${S[@]}" --identity $CLIENT --in "$T/got-cli.bin" 2>"$T/open2.err") &&
  [ "$out" = "$SECRET" ] && pass "keyhold seal -> mosquitto -> keyhold open" ||
  fail "cli open: '$out' $(cat "$T/open2.err")"
[ -s "$T/spy.bin" ] && ! grep -qa "wire transfer" "$T/spy.bin" "$T/mosquitto.log" &&
  pass "the broker carried ciphertext only" || fail "plaintext at the broker"
$PY - "$pub" "$T/cli.bin" <<'PYEOF' && pass "a python3-nacl SealedBox cannot open it without the private key" || fail "nacl"
import sys
from nacl.public import PrivateKey, SealedBox
from nacl.exceptions import CryptoError
try:
    SealedBox(PrivateKey.generate()).decrypt(open(sys.argv[2], "rb").read())
    sys.exit(1)
except CryptoError:
    pass
PYEOF

# 3. What must fail, each with its reason.
expect_open() { # expect_open NAME FILE PATTERN [ARGS...]
  local name=$1 file=$2 pat=$3
  shift 3
  if "$@" "${K[@]}" open "${S[@]}" --identity "${ID:-$CLIENT}" --in "$file" >"$T/$name.out" 2>"$T/$name.err"; then
    fail "$name: opened"
  elif grep -q -- "$pat" "$T/$name.err" && [ ! -s "$T/$name.out" ]; then
    pass "$name: refused ($pat)"
  else
    fail "$name: $(cat "$T/$name.err")"
  fi
}
cp "$T/cli.bin" "$T/flip.bin"
printf '\x01' | dd of="$T/flip.bin" bs=1 seek=50 conv=notrunc 2>/dev/null
expect_open tampered "$T/flip.bin" "does not open with $CLIENT's sealing key: altered, truncated, or sealed to another key \[INVALID_ARGUMENT\]"
head -c 40 "$T/cli.bin" >"$T/short.bin"
expect_open short "$T/short.bin" "too short"
head -c $(( $(stat -c %s "$T/cli.bin") - 1 )) "$T/cli.bin" >"$T/cut.bin"
expect_open truncated "$T/cut.bin" "does not open"
other=$($PY -c 'from nacl.public import PrivateKey; print(bytes(PrivateKey.generate().public_key).hex())')
printf '%s' "$SECRET" | "${K[@]}" seal --to "$other" >"$T/other.bin"
expect_open misaddressed "$T/other.bin" "does not open with $CLIENT's sealing key"
ID=spiffe://example.org/server expect_open wrong-identity "$T/cli.bin" \
  "may not use identity 'spiffe://example.org/server' for KeyOperations.OpenSealed (needs the 'open-sealed' grant)"
head -c 300000 /dev/zero >"$T/big.bin"
expect_open oversized "$T/big.bin" "input over 262144 bytes"
expect_open nogrant "$T/cli.bin" "caller uid $NOBODY may not use identity '$CLIENT' for KeyOperations.OpenSealed (needs the 'open-sealed' grant) \[PERMISSION_DENIED\]" \
  setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups --
st=0
"${K[@]}" seal --to abcd </dev/null >/dev/null 2>"$T/badto.err" || st=$?
[ "$st" = 1 ] && grep -q -- "--to: 64 hex digits expected" "$T/badto.err" && pass "seal --to checked" ||
  fail "seal --to: $st $(cat "$T/badto.err")"

# 4. The log: caller, identity, operation, result; never the message.
grep -q "key-op op=open_sealed caller_uid=0 caller_pid=[0-9]* identity=$CLIENT result=OK" "$T/kd.log" &&
  pass "opens logged with caller, identity and result" || fail "no key-op log line"
grep -q "key-op op=open_sealed caller_uid=$NOBODY .*result=PERMISSION_DENIED" "$T/kd.log" &&
  pass "the refusal logged" || fail "refusal not logged"
! grep -qa "wire transfer" "$T/kd.log" && pass "the plaintext is in no log" || fail "plaintext logged"
finish

#!/usr/bin/env bash
# noise.key rotates with its identity: a new key file (atomic rename) is
# picked up live and `keyhold channel pubkey` returns it (the same bytes
# `openssl pkey` derives); an XX channel then works with the new key; a
# group-readable replacement is refused and the key in force stays.
source "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
start_keyholdd kd "$P/ids"
pub() { "$KEYHOLD" channel pubkey --sidecar "$T/kd.sock" --identity spiffe://example.org/client; }
raw_pub() { openssl pkey -in "$1" -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n'; }

before=$(pub)
[ "$before" = "$(raw_pub "$P/ids/client/noise.key")" ] && pass "pubkey is noise.key's public key" ||
  fail "pubkey $before"
openssl genpkey -algorithm X25519 -out "$T/new.key" 2>/dev/null
chmod 600 "$T/new.key"
mv -f "$T/new.key" "$P/ids/client/noise.key"
wait_for "$T/kd.log" "identity reloaded \(same certificate\) dir=client" 10 &&
  pass "identity reloaded after noise.key changed" || fail "no reload"
after=$(pub)
[ "$after" != "$before" ] && [ "$after" = "$(raw_pub "$P/ids/client/noise.key")" ] &&
  pass "pubkey now returns the new key" || fail "pubkey after rotation: $after"

# A channel with the rotated key: IK towards the client's new static key
# (both ends on the one keyholdd, over a pair of fifos as in channels.sh).
mkfifo "$T/i2r" "$T/r2i"
exec 5<>"$T/i2r" 6<>"$T/r2i"
timeout 30 "$KEYHOLD" channel respond --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
  --pattern IK --echo --expect 1 <&5 >&6 2>"$T/resp.err" &
rp=$!
rc=0
timeout 30 "$KEYHOLD" channel initiate --sidecar "$T/kd.sock" --identity spiffe://example.org/server \
  --pattern IK --responder-key "$after" --expect-peer spiffe://example.org/client --send ping \
  --expect 1 <&6 >&5 2>"$T/init.err" || rc=$?
wait "$rp" || true
exec 5>&- 6>&-
[ "$rc" = 0 ] && grep -qx "message: echo: ping" "$T/init.err" && pass "IK channel to the rotated key" ||
  fail "IK: $(cat "$T/init.err" "$T/resp.err")"

openssl genpkey -algorithm X25519 -out "$T/loose.key" 2>/dev/null
chmod 640 "$T/loose.key"
mv -f "$T/loose.key" "$P/ids/client/noise.key"
wait_for "$T/kd.log" "identity client: new files refused, the previous identity stays: .*noise.key" 10 &&
  pass "a group-readable noise.key is refused" || fail "loose noise.key not refused"
[ "$(pub)" = "$after" ] && pass "the key in force stays" || fail "key changed to a refused one"
finish

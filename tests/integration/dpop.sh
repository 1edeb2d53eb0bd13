#!/usr/bin/env bash
# DPoP proofs (RFC 9449) signed in keyholdd with the identity's key, checked
# by an independent JOSE library (Debian's python3-jwcrypto): signature
# under the header's jwk, typ, alg, claims (htm, htu, iat, jti, nonce, ath)
# and the RFC 7638 thumbprint; ES256 with a P-256 identity, EdDSA with an
# Ed25519 one, ES256 with a dedicated dpop.key for an RSA identity; a
# replayed proof carries the same jti, a new proof a new one; bad inputs,
# EdDSA without an Ed25519 key and a caller without the `dpop` grant are
# refused with their reasons.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "not ok - must run as root to switch uids with setpriv"; exit 1; }
PY=/usr/bin/python3
VERIFY="$(dirname "$0")/../tools/dpop_verify.py"
KEYTYPES="ed25519 rsa" make_pki
P=$T/pki
chmod 755 "$T"
NOBODY=65534
cat >"$T/policy.yaml" <<YAML
identities:
  client:
    callers: {uids: [0]}
    operations: [dpop]
  ed25519:
    callers: {uids: [0]}
    operations: [dpop]
  rsa:
    callers: {uids: [0]}
    operations: [dpop]
  server:
    callers: {uids: [0, $NOBODY]}
    operations: [tls-offload]
YAML
start_keyholdd kd "$P/ids" --policy "$T/policy.yaml" --socket-group $NOBODY
D=("$KEYHOLD" dpop --sidecar "$T/kd.sock")
HTU=https://as.example.org/token

proof() { # proof NAME IDENTITY ARGS...: the proof in $T/NAME.jws, jkt in $T/NAME.err
  local name=$1 id=$2
  shift 2
  "${D[@]}" --identity "$id" "$@" >"$T/$name.jws" 2>"$T/$name.err"
}
jkt_of() { sed -n 's/^jkt=//p' "$T/$1.err"; }

jkt=$("${D[@]}" --identity spiffe://example.org/client --thumbprint)
proof es spiffe://example.org/client --htm POST --htu "$HTU" --nonce n-4711 --ath-of my-access-token &&
  jti1=$($PY "$VERIFY" "$T/es.jws" "$jkt" POST "$HTU" n-4711 my-access-token 2>"$T/v1.err") &&
  pass "ES256 proof verified by jwcrypto (signature, typ, claims, nonce, ath, thumbprint)" ||
  fail "ES256: $(cat "$T/es.err" "$T/v1.err")"
[ "$(jkt_of es)" = "$jkt" ] && pass "GetDpopThumbprint equals the proof's jkt" || fail "jkt differs"
grep -q '"alg":"ES256"' <(cut -d. -f1 "$T/es.jws" | tr '_-' '/+' | base64 -d 2>/dev/null) &&
  pass "alg ES256 for the P-256 identity" || fail "alg"
proof plain spiffe://example.org/client --htm GET --htu https://api.example.org/resource &&
  jti2=$($PY "$VERIFY" "$T/plain.jws" "$jkt" GET https://api.example.org/resource "" 2>"$T/v2.err") &&
  pass "a proof without nonce and ath has neither" || fail "plain: $(cat "$T/plain.err" "$T/v2.err")"
jti1b=$($PY "$VERIFY" "$T/es.jws" "$jkt" POST "$HTU" n-4711 my-access-token 2>/dev/null)
[ -n "$jti1" ] && [ "$jti1" != "$jti2" ] && [ "$jti1" = "$jti1b" ] &&
  pass "each proof has its own jti; a replayed proof shows the same jti (a server's replay check sees it)" ||
  fail "jti: $jti1 $jti2 $jti1b"

ejkt=$("${D[@]}" --identity spiffe://example.org/ed25519 --thumbprint)
proof ed spiffe://example.org/ed25519 --htm POST --htu "$HTU" --alg EdDSA &&
  $PY "$VERIFY" "$T/ed.jws" "$ejkt" POST "$HTU" "" >/dev/null 2>"$T/v3.err" &&
  pass "EdDSA proof with the Ed25519 identity verified" || fail "EdDSA: $(cat "$T/ed.err" "$T/v3.err")"

refused() { # refused NAME PATTERN ARGS...
  local name=$1 pat=$2
  shift 2
  if "$@" >"$T/$name.out" 2>"$T/$name.err"; then fail "$name: accepted"
  elif grep -q -- "$pat" "$T/$name.err"; then pass "$name: $pat"
  else fail "$name: $(cat "$T/$name.err")"; fi
}
# An RSA identity signs ES256 proofs with its dedicated dpop.key (kept like
# noise.key); a P-256 identity needs none.
rjkt=$("${D[@]}" --identity spiffe://example.org/rsa --thumbprint)
proof rsa spiffe://example.org/rsa --htm POST --htu "$HTU" &&
  $PY "$VERIFY" "$T/rsa.jws" "$rjkt" POST "$HTU" "" >/dev/null 2>"$T/v4.err" &&
  pass "ES256 proof for the RSA identity, with its dedicated dpop.key, verified" ||
  fail "rsa: $(cat "$T/rsa.err" "$T/v4.err")"
[ "$(stat -c %a "$P/ids/rsa/dpop.key" 2>/dev/null)" = 600 ] && [ ! -e "$P/ids/client/dpop.key" ] &&
  pass "dpop.key made (0600) only for the identity whose key is not P-256" || fail "dpop.key files"
[ "$rjkt" != "$jkt" ] && pass "each identity has its own DPoP key" || fail "shared jkt"
refused eddsa-on-p256 "identity spiffe://example.org/client has no EdDSA key for DPoP .*\[FAILED_PRECONDITION\]" \
  "${D[@]}" --identity spiffe://example.org/client --htm POST --htu "$HTU" --alg EdDSA
refused query "htu must be an absolute http(s) URI without query or fragment" \
  "${D[@]}" --identity spiffe://example.org/client --htm POST --htu "$HTU?x=1"
refused method "htm must be an HTTP method" \
  "${D[@]}" --identity spiffe://example.org/client --htm 'po st' --htu "$HTU"
refused nonce "nonce must be printable ASCII" \
  "${D[@]}" --identity spiffe://example.org/client --htm POST --htu "$HTU" --nonce 'a"b'
refused alg "alg 'HS256': ES256 or EdDSA" \
  "${D[@]}" --identity spiffe://example.org/client --htm POST --htu "$HTU" --alg HS256
refused nogrant "may not use identity 'spiffe://example.org/server' for KeyOperations.SignDpopProof (needs the 'dpop' grant) \[PERMISSION_DENIED\]" \
  "${D[@]}" --identity spiffe://example.org/server --htm POST --htu "$HTU"
refused nobody "caller uid $NOBODY may not use identity 'spiffe://example.org/client'" \
  setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- "${D[@]}" --identity spiffe://example.org/client --htm POST --htu "$HTU"
grep -q "key-op op=sign_dpop_proof caller_uid=0 .*identity=spiffe://example.org/client result=OK" "$T/kd.log" &&
  pass "proofs logged with caller, identity and result" || fail "no log line"
! grep -q "my-access-token" "$T/kd.log" && pass "the access token never reaches keyholdd's log" ||
  fail "token in the log"
finish

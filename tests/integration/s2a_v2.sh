#!/usr/bin/env bash
# S2A v2 in both dialects: a BoringSSL TLS endpoint whose key stays in
# keyholdd (tests/tools/s2a_v2_peer) against openssl, gnutls and curl, for
# P-256, P-384, RSA and Ed25519 identities; resumption through two keyholdd
# sharing ticket keys; every operation's errors; keyholdd keeps serving.
. "$(dirname "$0")/lib.sh"
: "${S2A_V2_PEER:?}"
KEYTYPES="p384 rsa ed25519" make_pki
P=$T/pki
start_keyholdd kd "$P/ids"
S=$T/kd.sock
v2() { timeout 20 "$S2A_V2_PEER" --socket "$S" "$@"; }

# name TYPE: the identity of key type TYPE (p256: the test PKI's client and
# server identities); dns TYPE: the DNS name its certificate carries.
name() { case $1 in p256) echo "spiffe://example.org/$2" ;; *) echo "spiffe://example.org/$1" ;; esac; }
dns() { case $1 in p256) echo localhost ;; *) echo "$1.example.org" ;; esac; }

start_rev_server # openssl s_server -Verify 1 -rev on $port

for dialect in s2a grpc-java; do
  for kt in p256 p384 rsa ed25519; do
    # 1. Client: openssl s_server requires and verifies our certificate.
    id=$(name "$kt" client)
    if v2 --dialect "$dialect" --identity "$id" --connect "$port" --server-name localhost \
      --message "hello-$kt-$dialect" >"$T/c.out" 2>"$T/c.err" &&
      grep -q "got: $(echo "hello-$kt-$dialect" | rev)" "$T/c.out" &&
      grep -q "validated: peer spiffe://example.org/peer-server" "$T/c.out"; then
      pass "$dialect $kt: client handshake with openssl s_server -Verify 1, data both ways"
    else
      fail "$dialect $kt: client handshake with openssl s_server"
      cat "$T/c.out" "$T/c.err" | sed 's/^/    /'
    fi
    # 2. Server: openssl s_client and curl present client certificates.
    id=$(name "$kt" server)
    rm -f "$T/port"
    bg timeout 30 "$S2A_V2_PEER" --socket "$S" --dialect "$dialect" --identity "$id" --listen "$T/port" \
      --accept 2 >"$T/s.out" 2>"$T/s.err"
    for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
    sport=$(cat "$T/port")
    echo "from-s_client" | timeout 10 openssl s_client -tls1_3 -connect "127.0.0.1:$sport" \
      -servername "$(dns "$kt")" -verify_return_error -CAfile "$P/ca/ca.crt" \
      -cert "$P/peer/client.crt" -key "$P/peer/client.key" -quiet >"$T/sc.out" 2>"$T/sc.err" || true
    grep -q "tneilc_s-morf" "$T/sc.out" && pass "$dialect $kt: server handshake with openssl s_client" ||
      fail "$dialect $kt: openssl s_client -> s2a_v2_peer: $(tail -3 "$T/sc.err" "$T/s.err")"
    body=$(timeout 10 curl -sS --cacert "$P/ca/ca.crt" --cert "$P/peer/client.crt" --key "$P/peer/client.key" \
      --resolve "$(dns "$kt"):$sport:127.0.0.1" "https://$(dns "$kt"):$sport/" 2>"$T/curl.err") || true
    [ "$body" = "hello from s2a_v2_peer" ] && pass "$dialect $kt: server handshake with curl --cert" ||
      fail "$dialect $kt: curl -> s2a_v2_peer: $(cat "$T/curl.err" "$T/s.err")"
    wait "${PIDS[-1]}" 2>/dev/null || true
  done

  # 3. gnutls-serv requires a client certificate.
  gport=$(free_port)
  bg gnutls-serv --echo --port "$gport" --x509certfile "$P/peer/server.crt" --x509keyfile "$P/peer/server.key" \
    --x509cafile "$P/ca/ca.crt" --require-client-cert --verify-client-cert \
    --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' >"$T/gs.out" 2>&1
  wait_for "$T/gs.out" "listening"
  v2 --dialect "$dialect" --identity spiffe://example.org/client --connect "$gport" --server-name localhost \
    --message "to-gnutls" >"$T/g.out" 2>"$T/g.err" && grep -q "got: to-gnutls" "$T/g.out" &&
    pass "$dialect: client handshake with gnutls-serv --require-client-cert" ||
    fail "$dialect: gnutls-serv: $(cat "$T/g.out" "$T/g.err")"
  kill "${PIDS[-1]}" 2>/dev/null || true
done

# 4. Resumption through OffloadResumptionKeyOperation across two keyholdd
# sharing ticket keys; the second holds a newer key first, the old one still
# opens.
old=$(openssl rand -hex 48)
new=$(openssl rand -hex 48)
(umask 077 && echo "$old" >"$T/keys1" && printf '%s\n%s\n' "$new" "$old" >"$T/keys2")
start_keyholdd kd1 "$P/ids" --ticket-keys "$T/keys1"
start_keyholdd kd2 "$P/ids" --ticket-keys "$T/keys2"
serve() { # serve NAME SOCKET: one s2a_v2_peer server for two connections; sets sport
  rm -f "$T/$1.port"
  bg timeout 30 "$S2A_V2_PEER" --socket "$2" --identity spiffe://example.org/server --listen "$T/$1.port" \
    --accept 2 >"$T/$1.out" 2>"$T/$1.err"
  for _ in $(seq 100); do [ -s "$T/$1.port" ] && break; sleep 0.05; done
  sport=$(cat "$T/$1.port")
}
sclient() { # sclient PORT SESSARGS...: one s_client; prints its summary lines
  echo hi | timeout 10 openssl s_client -tls1_3 -connect "127.0.0.1:$1" -CAfile "$P/ca/ca.crt" \
    -cert "$P/peer/client.crt" -key "$P/peer/client.key" -ign_eof "${@:2}" 2>&1 | grep -E '^(New|Reused),' || true
}
serve r1 "$T/kd1.sock"
p1=$sport
serve r2 "$T/kd2.sock"
p2=$sport
first=$(sclient "$p1" -sess_out "$T/sess.pem")
again=$(sclient "$p2" -sess_in "$T/sess.pem")
case "$first" in New,*) pass "replica 1: full handshake, ticket saved" ;; *) fail "replica 1: $first" ;; esac
case "$again" in Reused,*) pass "replica 2 (newer key first) resumed replica 1's ticket" ;;
  *) fail "replica 2 did not resume: $again; $(cat "$T/r2.err")" ;; esac
# A ticket replica 1 cannot open (replica 2 sealed it under the new key) is
# ignored: a full handshake, not a failure.
sclient "$p2" -sess_out "$T/sess2.pem" >/dev/null
back=$(sclient "$p1" -sess_in "$T/sess2.pem")
case "$back" in New,*) pass "replica 1 ignores a ticket under a key it does not hold (full handshake)" ;;
  *) fail "replica 1 with a foreign ticket: $back" ;; esac

# 5. Every operation's errors: status and message, and the stream's answer.
expect() { # expect DESCRIPTION PATTERN ARGS...: one --op request's output matches
  local what=$1 pat=$2
  shift 2
  if v2 "$@" >"$T/op.out" 2>&1 && grep -qE -- "$pat" "$T/op.out"; then pass "$what"; else
    fail "$what: wanted /$pat/, got: $(cat "$T/op.out")"
  fi
}
C=spiffe://example.org/client
hex32=$(printf '%064d' 7)
for dialect in s2a grpc-java; do
  d=(--dialect "$dialect")
  expect "$dialect: SIGN with ECDSA P-256 over a SHA-256 digest" '^out 30' "${d[@]}" --identity $C \
    --op sign --sigalg 4 --digest-len 32 --in "$hex32"
  expect "$dialect: SIGN with an algorithm that does not fit the key" \
    '^status 3 signature algorithm RSA_PSS_RSAE_SHA256 does not fit identity .spiffe://example.org/client., whose key is ECDSA P-256' \
    "${d[@]}" --identity $C --op sign --sigalg 7 --in 00
  expect "$dialect: SIGN with a digest of the wrong length" '^status 3 sha256_digest holds 31 bytes, not 32' \
    "${d[@]}" --identity $C --op sign --sigalg 4 --digest-len 32 --in "${hex32:2}"
  expect "$dialect: SIGN with a digest of the wrong hash" '^status 3 ECDSA_SECP256R1_SHA256 signs a sha256_digest, not a sha384_digest' \
    "${d[@]}" --identity $C --op sign --sigalg 4 --digest-len 48 --in "$hex32${hex32:0:32}"
  expect "$dialect: Ed25519 refuses a digest" '^status 3 ED25519 signs raw_bytes, not a digest' \
    "${d[@]}" --identity spiffe://example.org/ed25519 --op sign --sigalg 10 --digest-len 64 --in "$hex32$hex32"
  expect "$dialect: unknown signature algorithm" '^status 3 signature_algorithm 42 is not supported' \
    "${d[@]}" --identity $C --op sign --sigalg 42 --in 00
  expect "$dialect: DECRYPT" '^status 9 DECRYPT is not offered' "${d[@]}" --identity $C --op decrypt
  expect "$dialect: unknown identity" "^status 5 .*spiffe://example.org/nobody" \
    "${d[@]}" --identity spiffe://example.org/nobody --op config-client
  expect "$dialect: no identity named while several are held" '^status 3 no local identity given' \
    "${d[@]}" --op config-client
  expect "$dialect: a chain from another CA" '^validation 2 peer certificate rejected: unable to get local issuer certificate' \
    "${d[@]}" --identity $C --op validate-server --chain "$P/rogue/server.crt" --server-name localhost
  expect "$dialect: a server chain for another hostname" '^validation 2 .*does not match server name other.example.org' \
    "${d[@]}" --identity $C --op validate-server --chain "$P/peer/server.crt" --server-name other.example.org
  expect "$dialect: garbage after the chain" '^validation 2 peer certificate 1 is not a DER certificate' \
    "${d[@]}" --identity $C --op validate-server --chain "$P/peer/server.crt" --server-name localhost --in deadbeef
  for _ in $(seq 17); do cat "$P/peer/client.crt"; done >"$T/long.pem"
  expect "$dialect: a chain of 17 certificates" '^status 3 a chain of 17 certificates, at most 16' \
    "${d[@]}" --identity spiffe://example.org/server --op validate-client --chain "$T/long.pem"
  expect "$dialect: CONNECT_TO_GOOGLE" '^status 12 verification mode CONNECT_TO_GOOGLE is not supported' \
    "${d[@]}" --identity $C --op validate-server --chain "$P/peer/server.crt" --sigalg 2
  expect "$dialect: a client peer validates with its S2AContext" \
    '^validation 1 +peer=spiffe://example.org/peer-client fingerprints=1 local=spiffe://example.org/server' \
    "${d[@]}" --identity spiffe://example.org/server --op validate-client --chain "$P/peer/client.crt"
  expect "$dialect: a request with no operation" '^status 3 request carries no operation' "${d[@]}" --op empty
  sealed=$(v2 "${d[@]}" --identity spiffe://example.org/server --op seal --in 0102030405 | sed -n 's/^out //p')
  expect "$dialect: a sealed ticket opens" '^out 0102030405$' "${d[@]}" --identity spiffe://example.org/server \
    --op open --in "$sealed"
  tampered=${sealed:0:40}$([ "${sealed:40:1}" = 0 ] && echo 1 || echo 0)${sealed:41}
  expect "$dialect: a tampered ticket fails" '^status 3 the ticket does not authenticate' \
    "${d[@]}" --identity spiffe://example.org/server --op open --in "$tampered"
done
# 6. Grants per operation, by token: the client identity may validate only.
TOKEN=v2-test-token-0123456789
cat >"$T/policy.yaml" <<EOF
identities:
  client:
    callers: {tokens: ["$TOKEN"]}
    operations: [validate]
  server:
    callers: {uids: [$(id -u)]}
EOF
start_keyholdd kdp "$P/ids" --policy "$T/policy.yaml"
S=$T/kdp.sock
for dialect in s2a grpc-java; do
  d=(--dialect "$dialect")
  expect "$dialect: no token, no grant" \
    "^status 7 caller uid $(id -u) may not use identity 'spiffe://example.org/client' for OffloadPrivateKeyOperation \(needs the 'sign' grant\)$" \
    "${d[@]}" --identity $C --op sign --sigalg 4 --digest-len 32 --in "$hex32"
  expect "$dialect: a token that grants validate does not grant sign" \
    "needs the 'sign' grant\); the access token presented does not grant it$" \
    "${d[@]}" --identity $C --token "$TOKEN" --op sign --sigalg 4 --digest-len 32 --in "$hex32"
  expect "$dialect: the token grants validate" '^validation 1 +peer=spiffe://example.org/peer-server' \
    "${d[@]}" --identity $C --token "$TOKEN" --op validate-server --chain "$P/peer/server.crt" --server-name localhost
  expect "$dialect: an uid grant without operations: every operation" '^out 30' \
    "${d[@]}" --identity spiffe://example.org/server --op sign --sigalg 4 --digest-len 32 --in "$hex32"
done
wait_for "$T/kdp.log" "s2a v2: caller uid=$(id -u) OffloadPrivateKeyOperation refused: caller uid" &&
  pass "a refusal is logged with caller, identity, operation" || fail "no refusal log line"
S=$T/kd.sock
# 7. Loopback TCP for clients that cannot dial a Unix socket: no uid there,
# so only token grants apply; a non-loopback address is refused.
cat >"$T/tcp.yaml" <<EOF
identities:
  server:
    callers: {tokens: ["$TOKEN"]}
EOF
start_keyholdd kdt "$P/ids" --policy "$T/tcp.yaml" --listen tcp://127.0.0.1:0
wait_for "$T/kdt.log" "also listening on tcp://127.0.0.1:0, port [0-9]+"
tport=$(sed -n 's/.*also listening on .*, port \([0-9]*\) .*/\1/p' "$T/kdt.log" | head -1)
S=tcp://127.0.0.1:$tport
expect "TCP: no token, refused as a TCP caller" \
  "^status 7 a TCP caller \(no uid\) may not use identity 'spiffe://example.org/server' for GetTlsConfiguration" \
  --identity spiffe://example.org/server --op config-server
rm -f "$T/port"
bg timeout 30 "$S2A_V2_PEER" --socket "$S" --token "$TOKEN" --identity spiffe://example.org/server \
  --listen "$T/port" --accept 1 >"$T/t.out" 2>"$T/t.err"
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
echo "over-tcp" | timeout 10 openssl s_client -tls1_3 -connect "127.0.0.1:$(cat "$T/port")" -verify_return_error \
  -CAfile "$P/ca/ca.crt" -cert "$P/peer/client.crt" -key "$P/peer/client.key" -quiet >"$T/tc.out" 2>&1 || true
grep -q "pct-revo" "$T/tc.out" && pass "TCP with the token: a server handshake through keyholdd" ||
  fail "TCP handshake: $(cat "$T/tc.out" "$T/t.err")"
if "$KEYHOLDD" --socket "$T/remote.sock" --identities "$P/ids" --listen tcp://0.0.0.0:0 2>"$T/remote.err"; then
  fail "--listen on 0.0.0.0 started"
else
  grep -q "not a loopback address" "$T/remote.err" && pass "--listen refuses a non-loopback address" ||
    fail "--listen 0.0.0.0: $(cat "$T/remote.err")"
fi
S=$T/kd.sock
expect "keyholdd still serves after all of that" '^server chain=1 min=4 max=4 request_client_certificate=5 resumption=1 overhead=80' \
  --identity spiffe://example.org/server --op config-server
finish

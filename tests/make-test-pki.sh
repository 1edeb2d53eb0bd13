#!/usr/bin/env bash
# make-test-pki.sh DIR: a fresh test PKI made with the openssl CLI.
#   DIR/ca/{ca.crt,ca.key}              test CA
#   DIR/other-ca/{ca.crt,ca.key}        an unrelated CA (negative tests)
#   DIR/ids/client/{tls.crt,tls.key,ca.crt}  spiffe://example.org/client (ECDSA P-256)
#   DIR/ids/server/{tls.crt,tls.key,ca.crt}  spiffe://example.org/server + DNS localhost, IP 127.0.0.1
#   DIR/peer/{server,client}.{crt,key}  plain-PEM leaves for openssl/nginx/gnutls peers
#                                       (server: DNS localhost + IP 127.0.0.1 +
#                                       spiffe://example.org/peer-server; client: spiffe://example.org/peer-client)
#   DIR/rogue/{server,client}.{crt,key} leaves from other-ca
# Key types for extra identities: KEYTYPES="rsa ed25519 p384" adds ids/<type>.
# LEAF_KEYTYPE=p384|rsa|ed25519 gives ids/{client,server} and peer/* that key
# type instead of P-256 (the benchmarks' key-choice runs); CAs stay P-256.
# ROTATIONS=N adds DIR/rot/1..N/{tls.crt,tls.key}: fresh server leaves (same
# names as ids/server, new keys) for rotation tests. CLIENT_ROTATIONS=N adds
# DIR/rot-client/1..N/{tls.crt,tls.key} the same way for ids/client.
set -euo pipefail
dir=${1:?usage: make-test-pki.sh DIR}
mkdir -p "$dir"/{ca,other-ca,ids,peer,rogue}
cd "$dir"

newkey() { # newkey TYPE OUT
  case $1 in
    p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2" 2>/dev/null ;;
    p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$2" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" 2>/dev/null ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$2" 2>/dev/null ;;
    *) echo "make-test-pki.sh: unknown key type '$1'" >&2; exit 2 ;;
  esac
}

mkca() { # mkca DIR CN
  newkey p256 "$1/ca.key"
  openssl req -x509 -new -key "$1/ca.key" -subj "/CN=$2" -days 30 -out "$1/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() { # leaf CADIR KEYTYPE OUTKEY OUTCRT CN SAN EKU
  newkey "$2" "$3"
  openssl req -new -key "$3" -subj "/CN=$5" -out "$4.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n' "$6" "$7" > "$4.ext"
  openssl x509 -req -in "$4.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial \
    -days 30 -extfile "$4.ext" -out "$4" 2>/dev/null
  rm -f "$4.csr" "$4.ext"
}

ident() { # ident NAME KEYTYPE SAN
  mkdir -p "ids/$1"
  leaf ca "$2" "ids/$1/tls.key" "ids/$1/tls.crt" "$1" "$3" "serverAuth,clientAuth"
  cp ca/ca.crt "ids/$1/ca.crt"
}

mkca ca "Keyhold Test CA"
mkca other-ca "Other Test CA"
leafkey=${LEAF_KEYTYPE:-p256}
ident client "$leafkey" "URI:spiffe://example.org/client"
ident server "$leafkey" "URI:spiffe://example.org/server,DNS:localhost,IP:127.0.0.1"
for t in ${KEYTYPES:-}; do
  ident "$t" "$t" "URI:spiffe://example.org/$t,DNS:$t.example.org"
done
leaf ca "$leafkey" peer/server.key peer/server.crt "localhost" \
  "DNS:localhost,IP:127.0.0.1,URI:spiffe://example.org/peer-server" "serverAuth,clientAuth"
leaf ca "$leafkey" peer/client.key peer/client.crt "peer-client" \
  "URI:spiffe://example.org/peer-client" "serverAuth,clientAuth"
leaf other-ca p256 rogue/server.key rogue/server.crt "localhost" \
  "DNS:localhost,IP:127.0.0.1,URI:spiffe://example.org/server" "serverAuth,clientAuth"
leaf other-ca p256 rogue/client.key rogue/client.crt "rogue-client" \
  "URI:spiffe://example.org/client" "serverAuth,clientAuth"
for i in $(seq 1 "${ROTATIONS:-0}"); do
  mkdir -p "rot/$i"
  leaf ca p256 "rot/$i/tls.key" "rot/$i/tls.crt" "server-$i" \
    "URI:spiffe://example.org/server,DNS:localhost,IP:127.0.0.1" "serverAuth,clientAuth"
done
for i in $(seq 1 "${CLIENT_ROTATIONS:-0}"); do
  mkdir -p "rot-client/$i"
  leaf ca p256 "rot-client/$i/tls.key" "rot-client/$i/tls.crt" "client-$i" \
    "URI:spiffe://example.org/client" "serverAuth,clientAuth"
done
rm -f ca/ca.srl other-ca/ca.srl

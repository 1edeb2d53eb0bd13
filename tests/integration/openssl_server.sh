#!/usr/bin/env bash
# keyhold connect <-> openssl s_server -tls1_3 -Verify 1, for each TLS 1.3
# ciphersuite: data both ways, KeyUpdate from the server (k and K) and from
# our side (--key-update), data after each.
. "$(dirname "$0")/lib.sh"
make_pki
start_keyholdd kd "$T/pki/ids"
P=$T/pki

run_suite() { # run_suite SUITE [--key-update]
  local suite=$1 extra=${2:-} d=$T/$1${2:-}
  mkdir -p "$d"
  mkfifo "$d/srv.in" "$d/cli.in"
  exec 5<>"$d/srv.in" 6<>"$d/cli.in" # writers first: opening a fifo must not block
  local port
  port=$(free_port)
  bg openssl s_server -tls1_3 -ciphersuites "$suite" -Verify 1 -verify_return_error -msg \
    -CAfile "$P/ca/ca.crt" -cert "$P/peer/server.crt" -key "$P/peer/server.key" \
    -accept "127.0.0.1:$port" <"$d/srv.in" >"$d/srv.out" 2>&1
  wait_for "$d/srv.out" ACCEPT
  # shellcheck disable=SC2086
  bg "$KEYHOLD" connect --sidecar "$T/kd.sock" --identity spiffe://example.org/client \
    --expect-peer spiffe://example.org/peer-server $extra "127.0.0.1:$port" \
    <"$d/cli.in" >"$d/cli.out" 2>"$d/cli.err"
  if ! wait_for "$d/cli.err" "connected"; then fail "$suite$extra: handshake"; exec 5>&- 6>&-; return; fi
  grep -q "connected TLSv1.3 $suite alpn=- peer=spiffe://example.org/peer-server local=spiffe://example.org/client" "$d/cli.err" \
    && pass "$suite$extra: negotiated $suite, peer and local identity reported" \
    || fail "$suite$extra: wrong negotiation line: $(cat "$d/cli.err")"
  echo "client-line-1" >&6
  wait_for "$d/srv.out" "^client-line-1" && pass "$suite$extra: client -> server data" || fail "$suite$extra: client -> server data"
  echo "server-line-1" >&5
  wait_for "$d/cli.out" "^server-line-1" && pass "$suite$extra: server -> client data" || fail "$suite$extra: server -> client data"
  if [ -z "$extra" ]; then
    # -msg shows handshake messages: ">>>" sent by s_server, "<<<" received.
    echo k >&5
    wait_for "$d/srv.out" ">>> .*KeyUpdate" && pass "$suite: server sent KeyUpdate (k)" || fail "$suite: no KeyUpdate sent"
    for k in k K; do
      if [ "$k" = K ]; then
        echo K >&5
        wait_for "$d/srv.out" "<<< .*KeyUpdate" \
          && pass "$suite: we answered the server's update_requested with our KeyUpdate" \
          || fail "$suite: no KeyUpdate answer from us"
      fi
      echo "server-after-$k" >&5
      wait_for "$d/cli.out" "^server-after-$k" && pass "$suite: data from server after KeyUpdate ($k)" || fail "$suite: server data after KeyUpdate ($k)"
      echo "client-after-$k" >&6
      wait_for "$d/srv.out" "^client-after-$k" && pass "$suite: data to server after KeyUpdate ($k)" || fail "$suite: client data after KeyUpdate ($k)"
    done
  else
    wait_for "$d/srv.out" "<<< .*KeyUpdate" && pass "$suite$extra: server received our KeyUpdate" || fail "$suite$extra: server saw no KeyUpdate"
    wait_for "$d/srv.out" ">>> .*KeyUpdate" && pass "$suite$extra: server answered update_requested" || fail "$suite$extra: server did not answer"
    echo "client-after-our-update" >&6
    wait_for "$d/srv.out" "^client-after-our-update" && pass "$suite$extra: data after our KeyUpdate" || fail "$suite$extra: data after our KeyUpdate"
  fi
  exec 6>&- # stdin EOF: keyhold sends close_notify
  exec 5>&-
}

for s in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
  run_suite "$s"
done
run_suite TLS_AES_128_GCM_SHA256 --key-update
grep -q "result=OK" "$T/kd.log" && pass "sidecar logged successful handshakes" || fail "sidecar log"
if grep -qiE "traffic|secret|PRIVATE" "$T/kd.log"; then fail "sidecar log mentions secrets"; else pass "sidecar log carries no secret material"; fi
finish

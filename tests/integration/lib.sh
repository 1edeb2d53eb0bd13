# lib.sh: shared helpers for integration tests (sourced). Every wait is
# bounded; every process started is killed on exit; everything lives in a
# fresh temporary directory; peers listen on 127.0.0.1 ephemeral ports.
set -euo pipefail

: "${KEYHOLDD:?}" "${KEYHOLD:?}" "${KH_TEST_PKI:?}"
T=$(mktemp -d /tmp/kh-it.XXXXXX)
PIDS=()
KD_PIDS=() # keyholdd processes started by start_keyholdd, and their logs
KD_LOGS=()
FAILS=0
PASSES=0

# stop_keyholdds: SIGTERM every keyholdd still running; each must exit 0
# within 25 s (in an AddressSanitizer build a leak makes LeakSanitizer turn
# the exit status non-zero, so every test checks keyholdd for leaks).
running() { # running PID: alive and not a zombie
  [ -r "/proc/$1/stat" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null
}

stop_keyholdds() {
  local i p st
  for i in "${!KD_PIDS[@]}"; do
    p=${KD_PIDS[$i]}
    running "$p" || continue # ended (or was killed) by the test itself
    kill -TERM "$p"
    for _ in $(seq 500); do running "$p" || break; sleep 0.05; done
    running "$p" && { kill -KILL "$p"; echo "not ok - keyholdd $p hung after SIGTERM"; }
    st=0
    wait "$p" 2>/dev/null || st=$?
    if [ "$st" -ne 0 ]; then
      FAILS=$((FAILS + 1))
      echo "not ok - keyholdd $p exited $st after SIGTERM; ${KD_LOGS[$i]} ends:"
      tail -20 "${KD_LOGS[$i]}" | sed 's/^/    /'
    fi
  done
}

cleanup() {
  local rc=$?
  stop_keyholdds
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$FAILS" -eq 0 ]; then rm -rf "$T"; else echo "kept $T for inspection"; rc=1; fi
  exit "$rc"
}
trap cleanup EXIT

# asan_build: keyholdd was built with AddressSanitizer (RSS figures then
# measure its quarantine, not our memory; LeakSanitizer checks leaks instead).
asan_build() { grep -q AddressSanitizer "$KEYHOLDD"; }

bg() { # bg CMD...: start in the background and remember the pid
  "$@" <&0 &  # explicit: a background job would otherwise read /dev/null
  PIDS+=($!)
}

pass() { PASSES=$((PASSES + 1)); echo "ok - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "not ok - $*"; }

finish() {
  echo "$PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}

# wait_for FILE PATTERN [SECONDS]: until a line matching PATTERN is in FILE.
wait_for() {
  local tries=$(( ${3:-10} * 20 ))
  for _ in $(seq "$tries"); do
    grep -qE -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "timed out waiting for /$2/ in $1; it holds:" >&2
  sed 's/^/    /' "$1" >&2 2>/dev/null || true
  return 1
}

# free_port: an ephemeral TCP port on 127.0.0.1 (for peers that cannot bind 0).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_rev_server: openssl s_server (TLS 1.3, client certificate required,
# -rev: answers each line reversed) on a free port with the test PKI's peer
# server leaf; stdin from the fifo $T/srv.in (held open on fd 7); sets port.
start_rev_server() {
  port=$(free_port)
  mkfifo "$T/srv.in"
  exec 7<>"$T/srv.in"
  bg openssl s_server -tls1_3 -Verify 1 -verify_return_error -CAfile "$T/pki/ca/ca.crt" \
    -cert "$T/pki/peer/server.crt" -key "$T/pki/peer/server.key" -accept "127.0.0.1:$port" -rev \
    <"$T/srv.in" >"$T/srv.out" 2>&1
  wait_for "$T/srv.out" ACCEPT
}

# echo_handshake ID SECONDS: one `keyhold connect` (client identity) to the
# echo server on $PORT through $T/kd.sock; true if line ID came back.
# stderr appends to $T/client.${ID%%-*}.err.
echo_handshake() {
  echo "$1" | timeout "$2" "$KEYHOLD" connect --sidecar "$T/kd.sock" \
    --identity spiffe://example.org/client --expect-peer spiffe://example.org/server \
    "127.0.0.1:$PORT" 2>>"$T/client.${1%%-*}.err" | grep -qx "$1"
}

# rev_handshake NAME: one `keyhold connect` (client identity) through
# $T/kd.sock to the start_rev_server peer on $port; true if the line came
# back reversed. Output in $T/NAME.out, errors in $T/NAME.err.
rev_handshake() {
  echo "hello-$1" | timeout 10 "$KEYHOLD" connect --sidecar "$T/kd.sock" \
    --identity spiffe://example.org/client --expect-peer spiffe://example.org/peer-server \
    "127.0.0.1:$port" >"$T/$1.out" 2>"$T/$1.err" && grep -q "$(echo "hello-$1" | rev)" "$T/$1.out"
}

# make_pki: a fresh CA, identities and peer leaves in $T/pki.
make_pki() { bash "$KH_TEST_PKI" "$T/pki"; }

# start_keyholdd NAME IDSDIR [ARGS...]: keyholdd on $T/NAME.sock, log $T/NAME.log.
start_keyholdd() {
  local name=$1 ids=$2
  shift 2
  bg "$KEYHOLDD" --socket "$T/$name.sock" --identities "$ids" "$@" 2>"$T/$name.log"
  KD_PIDS+=("${PIDS[-1]}")
  KD_LOGS+=("$T/$name.log")
  wait_for "$T/$name.log" "listening on"
}

# start_serve NAME ARGS...: keyhold serve on an ephemeral port; sets PORT.
start_serve() {
  local name=$1
  shift
  bg "$KEYHOLD" serve --listen 127.0.0.1:0 "$@" 2>"$T/$name.log"
  wait_for "$T/$name.log" "listening on"
  PORT=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$T/$name.log" | head -1)
}

# start_nginx TEXT: nginx on a free port ($nport) requiring a client
# certificate from the test CA, serving TEXT as /index.html; each request
# logged in $T/nginx/logs/access.log as `VERIFY "CLIENT_DN" STATUS URI`,
# and the verification result sent back in X-Client-Verify.
start_nginx() {
  command -v nginx >/dev/null || { echo "not ok - nginx missing: run tools/install-deps.sh"; exit 1; }
  nport=$(free_port)
  mkdir -p "$T/nginx/logs" "$T/www"
  echo "$1" >"$T/www/index.html"
  chmod 0755 "$T" "$T/www" # nginx workers run as an unprivileged user
  cat >"$T/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log info;
events { worker_connections 64; }
http {
  log_format kh '\$ssl_client_verify "\$ssl_client_s_dn" \$status \$request_uri';
  access_log $T/nginx/logs/access.log kh;
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  fastcgi_temp_path $T/nginx/fastcgi;
  uwsgi_temp_path $T/nginx/uwsgi;
  scgi_temp_path $T/nginx/scgi;
  server {
    listen 127.0.0.1:$nport ssl;
    server_name localhost;
    ssl_protocols TLSv1.3;
    ssl_certificate $T/pki/peer/server.crt;
    ssl_certificate_key $T/pki/peer/server.key;
    ssl_client_certificate $T/pki/ca/ca.crt;
    ssl_verify_client on;
    location / { root $T/www; add_header X-Client-Verify \$ssl_client_verify; }
  }
}
CONF
  bg nginx -p "$T/nginx" -c "$T/nginx/nginx.conf"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && return 0; sleep 0.05; done
  echo "nginx did not listen on $nport; error.log:" >&2
  cat "$T/nginx/logs/error.log" >&2
  return 1
}

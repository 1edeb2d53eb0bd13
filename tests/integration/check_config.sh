#!/usr/bin/env bash
# keyholdd --check-config on broken policies (issue 3, must-show 2): each
# prints its precise error (file:line:column: field: reason) and exits 1; the
# sidecar refuses to start with the same file and prints the same error.
. "$(dirname "$0")/lib.sh"
make_pki
P=$T/pki
mkdir -p "$T/cfg"

# case NAME EXPECTED-ERROR (after "FILE:") <<< POLICY
check_case() {
  local name=$1 want=$2 f=$T/cfg/$1.yaml
  cat >"$f"
  if "$KEYHOLDD" --check-config "$f" >"$T/$name.out" 2>&1; then
    fail "$name: --check-config accepted it"
  elif grep -qxF -- "$f:$want" "$T/$name.out"; then
    pass "$name: $want"
  else
    fail "$name: wanted '$f:$want', got '$(cat "$T/$name.out")'"
  fi
  local rc=0
  timeout 10 "$KEYHOLDD" --policy "$f" --socket "$T/$name.sock" --identities "$P/ids" \
    >"$T/$name.start" 2>&1 || rc=$?
  if [ "$rc" -eq 2 ] && grep -qF -- "keyholdd: $f:$want" "$T/$name.start" && [ ! -e "$T/$name.sock" ]; then
    pass "$name: keyholdd refuses to start (exit 2, same error, no socket)"
  else
    fail "$name: start rc=$rc: $(cat "$T/$name.start")"
  fi
}

check_case unknown-user "5:17: identities.client.callers.uids[1]: unknown user 'no-such-user-kh'" <<YAML
identities_dir: $P/ids
identities:
  client:
    callers:
      uids: [0, no-such-user-kh]
YAML
check_case typo-field "4:5: identities.client.caller: unknown field (expected one of: callers, peers, alpn, tls_versions, ciphersuites, operations)" <<YAML
identities_dir: $P/ids
identities:
  client:
    caller: {uids: [0]}
YAML
check_case world-socket "3:9: socket.mode: 0666 lets every local user reach the socket (at most 0770)" <<YAML
identities_dir: $P/ids
socket:
  mode: "0666"
identities:
  client: {callers: {uids: [0]}}
YAML
check_case bad-yaml "5:1: did not find expected ',' or ']'" <<YAML
identities_dir: $P/ids
identities:
  client:
    callers: {uids: [0
YAML
check_case tls12 "4:20: identities.client.tls_versions[0]: only TLS 1.3 is supported, found '1.2'" <<YAML
identities_dir: $P/ids
identities:
  client:
    tls_versions: ["1.2"]
    callers: {uids: [0]}
YAML
check_case bad-timeout "3:25: limits.handshake_timeout_ms: expected a number from 10 to 600000, found '0'" <<YAML
identities_dir: $P/ids
limits:
  handshake_timeout_ms: 0
identities:
  client: {callers: {uids: [0]}}
YAML
check_case missing-identity "3:3: identities.web: no such identity in $P/ids" <<YAML
identities_dir: $P/ids
identities:
  web: {callers: {uids: [0]}}
YAML
check_case short-token "3:31: identities.server.callers.tokens[0]: token is shorter than 16 characters" <<YAML
identities_dir: $P/ids
identities:
  server: {callers: {tokens: [abc]}}
YAML

# A flag value is checked as strictly as the file.
"$KEYHOLDD" --socket "$T/x.sock" --identities "$P/ids" --socket-mode 0777 >"$T/flag.out" 2>&1 \
  && fail "--socket-mode 0777 accepted" \
  || { grep -q "socket.mode: 0777 lets every local user reach the socket" "$T/flag.out" \
         && pass "--socket-mode 0777 refused" || fail "flag: $(cat "$T/flag.out")"; }
"$KEYHOLDD" --check-config "$T/cfg/none.yaml" >"$T/none.out" 2>&1 && fail "missing file accepted" \
  || { grep -q "$T/cfg/none.yaml: cannot open: No such file or directory" "$T/none.out" \
         && pass "missing file: named, with the reason" || fail "missing: $(cat "$T/none.out")"; }
finish

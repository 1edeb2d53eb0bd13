#!/usr/bin/env bash
# The command lines: --help and --version everywhere, numbers parsed
# strictly, unknown values refused with the allowed ones listed, the missing
# flag named, and nothing created by a mistyped command (`keyhold init
# --help` once made a directory named --help).
source "$(dirname "$0")/lib.sh"
cd "$T"

expect() { # expect STATUS PATTERN CMD...: exit status STATUS and output matching PATTERN
  local want=$1 pat=$2 st=0
  shift 2
  "$@" >"$T/out" 2>&1 </dev/null || st=$?
  if [ "$st" = "$want" ] && grep -qE -- "$pat" "$T/out"; then
    pass "$* -> $want"
  else
    fail "$*: exit $st (want $want), output: $(head -c 300 "$T/out")"
  fi
}

V=$(sed -n "s/^  version : '\(.*\)',/\1/p" "$KH_SOURCE_ROOT/meson.build")
expect 0 "^keyholdd $V\$" "$KEYHOLDD" --version
expect 0 "^keyhold $V\$" "$KEYHOLD" --version
expect 0 "usage: keyholdd" "$KEYHOLDD" --help
expect 0 "keyhold connect" "$KEYHOLD" --help
expect 0 "usage: keyhold init DIR" "$KEYHOLD" init --help
[ ! -e "$T/--help" ] && pass "init --help created nothing" || fail "init --help created ./--help"
expect 2 "unknown option '-x'" "$KEYHOLD" init -x
[ ! -e "$T/-x" ] && pass "init -x created nothing" || fail "init -x created ./-x"
expect 2 "one argument expected: DIR" "$KEYHOLD" init
expect 0 "usage: keyhold health" "$KEYHOLD" health --help
expect 0 "keyhold channel" "$KEYHOLD" channel --help
expect 0 "usage:" "$KEYHOLD" connect --help
expect 2 "unknown command 'bogus' \(one of connect, serve, channel, tunnel, health, pubkey, seal, open, dpop, init\)" \
  "$KEYHOLD" bogus
expect 2 "connect: unexpected argument 'b'" env KEYHOLD_SIDECAR=/x "$KEYHOLD" connect a:1 b
expect 1 "--timeout 'abc': a whole number from 1 to 3600000 expected" \
  env KEYHOLD_SIDECAR=/x "$KEYHOLD" connect --timeout abc 127.0.0.1:1
expect 1 "--timeout '10x'" env KEYHOLD_SIDECAR=/x "$KEYHOLD" connect --timeout 10x 127.0.0.1:1
expect 1 "--timeout '0'" env KEYHOLD_SIDECAR=/x "$KEYHOLD" connect --timeout 0 127.0.0.1:1
expect 1 "no sidecar socket: use --sidecar PATH or KEYHOLD_SIDECAR" \
  env -u KEYHOLD_SIDECAR "$KEYHOLD" connect 127.0.0.1:1
expect 1 "--timeout 'x': a whole number from 1 to 600000" "$KEYHOLD" health --sidecar /x --timeout x

# keyholdd: the missing flag named, unknown names listed, numbers strict.
expect 2 "no socket: give --socket PATH" env -u KEYHOLD_SOCKET "$KEYHOLDD"
expect 2 "no identities: give --identities DIR" env -u KEYHOLD_IDENTITIES "$KEYHOLDD" --socket x
expect 2 "--log-level: unknown level 'verbose' \(one of debug\|info\|warn\|error\|off\)" \
  "$KEYHOLDD" --log-level verbose --socket x --identities y
expect 2 "unknown level 'verbose'" env KEYHOLD_LOG_LEVEL=verbose "$KEYHOLDD" --socket x --identities y
expect 2 "--log-format: unknown format 'yaml' \(one of text\|json\)" "$KEYHOLDD" --log-format yaml
expect 2 "--workers: not a number from 0 to 16: many" "$KEYHOLDD" --workers many --socket x
expect 2 "unexpected argument 'stray'" "$KEYHOLDD" stray
expect 2 "unrecognized option '--bogus'" "$KEYHOLDD" --bogus
make_pki
expect 2 "--handshake-timeout-ms: expected a number from 10 to 600000, found '5s'" \
  "$KEYHOLDD" --socket "$T/a.sock" --identities "$T/pki/ids" --handshake-timeout-ms 5s
expect 1 "--metrics-listen tcp://localhost:9: HOST must be an IPv4 or \[IPv6\] address" \
  "$KEYHOLDD" --socket "$T/a.sock" --identities "$T/pki/ids" --metrics-listen tcp://localhost:9
[ ! -e "$T/a.sock" ] && pass "no socket left behind by refused starts" || fail "a.sock left behind"
finish

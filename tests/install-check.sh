#!/usr/bin/env bash
# `meson install` (into a scratch DESTDIR) gives a user what they need:
# keyhold.pc that pkg-config finds and an application builds and links
# against (the header under include/keyhold/, libkeyhold), keyholdd and
# keyhold, the systemd unit (Type=notify), man pages for both programs,
# the example policy and the Python binding.
set -u
build=$1 cc=${2:-cc}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok - $*"; }

d=$(mktemp -d /tmp/kh-install.XXXXXX)
trap 'rm -rf "$d"' EXIT
DESTDIR=$d meson install -C "$build" --no-rebuild --quiet >"$d.log" 2>&1 ||
  { cat "$d.log"; echo "FAIL: meson install"; exit 1; }
rm -f "$d.log"
prefix=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
pc=$(find "$d" -name keyhold.pc | head -1)
[ -n "$pc" ] && ok "keyhold.pc installed" || fail "no keyhold.pc"
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$d
pkg-config --exists keyhold && ok "pkg-config keyhold" || fail "pkg-config does not find keyhold"
[ "$(pkg-config --modversion keyhold)" = "$(meson introspect "$build" --projectinfo |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" ] &&
  ok "version matches the project" || fail "version $(pkg-config --modversion keyhold)"
pkg-config --print-requires-private keyhold | grep -q grpc && ok "grpc in Requires.private" ||
  fail "Requires.private: $(pkg-config --print-requires-private keyhold)"

cat >"$d/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <keyhold/keyhold.h>
int main(void) {
  kh_error err;
  kh_client *c = kh_client_new("/nonexistent/keyhold.sock", &err);
  printf("%s\n", kh_code_name(KH_ERR_HANDSHAKE));
  kh_client_free(c);
  return strcmp(kh_code_name(KH_ERR_HANDSHAKE), "HANDSHAKE") != 0;
}
C
# A sanitizer build's library needs the sanitizer runtime in the application.
san=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="b_sanitize"][0])')
sanflags=()
[ "$san" != none ] && sanflags=(-fsanitize="$san")
# shellcheck disable=SC2046
if $cc "${sanflags[@]}" -std=c11 -Wall -Wextra -Werror -o "$d/app" "$d/app.c" $(pkg-config --cflags --libs keyhold) 2>"$d/cc.err"; then
  ok "an application compiles and links with pkg-config --cflags --libs keyhold"
  libdir=$(dirname "$(find "$d" -name 'libkeyhold.so*' | head -1)")
  out=$(LD_LIBRARY_PATH=$libdir "$d/app") && ok "and runs ($out)" || fail "app: $out"
else
  fail "app does not build: $(cat "$d/cc.err")"
fi

for f in "sbin/keyholdd" "bin/keyhold" "include/keyhold/keyhold.h" "share/man/man8/keyholdd.8" \
  "share/man/man1/keyhold.1" "share/keyhold/examples/policy.yaml" "share/keyhold/python/keyhold.py"; do
  [ -e "$d$prefix/$f" ] && ok "$f" || fail "$prefix/$f not installed"
done
grep -q '^\.TH KEYHOLDD "8"' "$d$prefix/share/man/man8/keyholdd.8" && grep -q -- 'metrics\\-listen' \
  "$d$prefix/share/man/man8/keyholdd.8" && ok "keyholdd.8 is the --help text" || fail "keyholdd.8 content"
unit=$(find "$d" -name keyholdd.service | head -1)
[ -n "$unit" ] && grep -q '^Type=notify' "$unit" && ok "systemd unit installed, Type=notify" ||
  fail "unit: ${unit:-missing} $(grep '^Type' "$unit" 2>/dev/null)"
[ "$fails" -eq 0 ] && echo "install-check: OK" || echo "install-check: $fails failed"
[ "$fails" -eq 0 ]

#!/usr/bin/env bash
# libkeyhold installs exactly one header, <keyhold/keyhold.h>; it compiles
# alone in a C11 translation unit (-Wall -Wextra -Werror -pedantic), with no
# other Keyhold header on the include path; and its public copy of the error
# codes and type matches common/kh_error.h (the definition libkeyhold itself
# is built with), so the two cannot drift.
set -u
build=$1 src=$2 cc=${3:-cc}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

headers=$(meson introspect "$build" --installed | python3 -c '
import json, sys
for s, d in sorted(json.load(sys.stdin).items()):
    if d.endswith((".h", ".hpp", ".hh")): print(s + "\t" + d)')
n=$(printf '%s' "$headers" | grep -c . || true)
[ "$n" -eq 1 ] || fail "$n headers installed, want 1:"$'\n'"$headers"
dest=$(printf '%s' "$headers" | head -1 | cut -f2)
case "$dest" in
  */include/keyhold/keyhold.h) ;;
  *) fail "the header installs as $dest, want PREFIX/include/keyhold/keyhold.h" ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/include/keyhold"
cp "$src/client-shim/keyhold.h" "$tmp/include/keyhold/keyhold.h"
cat >"$tmp/alone.c" <<'C'
#include <keyhold/keyhold.h>
#include <keyhold/keyhold.h> /* twice: the include guard holds */

int use_it(kh_client *kc, int fd);
int use_it(kh_client *kc, int fd) {
  kh_error err;
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  kh_conn *c = kh_connect_fd(kc, fd, &o, &err);
  if (c == NULL) return err.code == KH_ERR_UNAVAILABLE ? 2 : 1;
  kh_conn_free(c);
  return kh_code_name(KH_OK)[0] == 'O' ? 0 : 1;
}
C
if ! out=$("$cc" -std=c11 -Wall -Wextra -Werror -pedantic -I"$tmp/include" -c "$tmp/alone.c" \
  -o "$tmp/alone.o" 2>&1); then
  fail "keyhold.h does not compile alone:"$'\n'"$out"
fi

# The error codes, the message size and the kh_error members: the public copy
# (the #else branch of keyhold.h) against common/kh_error.h.
facts() { # facts FILE: "NAME = VALUE" of kh_code, KH_ERROR_MSG_MAX, kh_error's members, prototypes
  sed 's:/\*.*\*/::g' "$1" | awk '
    /^typedef enum/ {e = 1} e && /KH_[A-Z_]+ = [0-9]+/ {gsub(/[ ,]/, ""); print "code " $0}
    e && /} kh_code;/ {e = 0}
    /^#define KH_ERROR_MSG_MAX/ {print "max " $3}
    /^typedef struct/ {s = 1} s && /;/ && !/}/ {gsub(/^ +/, ""); print "member " $0}
    s && /} kh_error;/ {s = 0}
    /^(const char \*|int |void |unsigned )kh_[a-z_]+\(/ {sub(/\(.*/, ""); print "function " $0}'
}
pub=$(sed -n '/^#else/,/^#endif \/\* KH_BUILDING_LIBKEYHOLD/p' "$src/client-shim/keyhold.h" >"$tmp/pub.h"; facts "$tmp/pub.h")
int=$(facts "$src/common/kh_error.h")
[ -n "$int" ] && [ "$(echo "$int" | grep -c '^code ')" -gt 10 ] || fail "cannot read kh_error.h's codes"
if [ "$pub" != "$int" ]; then
  fail "keyhold.h's error definitions differ from common/kh_error.h (< keyhold.h, > kh_error.h):"
  diff <(echo "$pub") <(echo "$int") | sed 's/^/  /'
fi
[ "$fails" -eq 0 ] || exit 1
echo "header-check: one installed header ($dest), compiles alone; $(echo "$pub" | grep -c '^code ') error codes match kh_error.h"

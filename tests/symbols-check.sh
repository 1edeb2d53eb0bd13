#!/usr/bin/env bash
# libkeyhold exports exactly the functions of its installed headers: the
# dynamic symbol table of the built library must list every name in
# client-shim/libkeyhold.map's global section and nothing else (no internal
# kh_* module, no s2a__proto__* descriptor that could clash with an app's).
set -u
lib=$1 map=$2
want=$(sed -n '/global:/,/local:/p' "$map" | grep -oE '^ *[a-z_0-9]+;' | tr -d ' ;' | sort)
have=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDRBW]$/ {print $3}' | sed 's/@.*//' | grep -v '^KEYHOLD_' | sort)
if [ "$want" != "$have" ]; then
  echo "FAIL: libkeyhold's exports differ from $map:"
  diff <(echo "$want") <(echo "$have") | sed 's/^/  /'
  exit 1
fi
echo "symbols-check: libkeyhold exports the $(echo "$want" | wc -l) public functions only"

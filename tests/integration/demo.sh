#!/usr/bin/env bash
# README command 1's demo, run as a test: it must finish and show the
# negotiated parameters and the reversed reply.
. "$(dirname "$0")/lib.sh"
bash "$KH_SOURCE_ROOT/tools/demo.sh" "$KH_BUILD_ROOT" >"$T/demo.out" 2>&1 && pass "demo exits 0" || fail "demo failed: $(tail -5 "$T/demo.out")"
grep -q "^negotiated:   TLSv1.3 TLS_" "$T/demo.out" && pass "demo prints the negotiated parameters" || fail "no parameters"
grep -q "^peer replied: yek etavirp on sdloh taht ppa na morf olleh" "$T/demo.out" && pass "demo shows the peer's reply" || fail "no reply"
finish

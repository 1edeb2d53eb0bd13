#!/usr/bin/env bash
# The process/library split of DESIGN.md, checked on the built binaries:
#  keyholdd links grpc_unsecure + BoringSSL, never OpenSSL's libssl/libcrypto
#  or the TLS-carrying libgrpc; libkeyhold and the CLI never load BoringSSL.
set -u
keyholdd=$1 shim=$2 cli=$3
fail=0
kmap=$(ldd "$keyholdd") || { echo "ldd $keyholdd failed"; exit 1; }
if grep -qE 'libssl\.so\.3|libcrypto\.so\.3' <<<"$kmap"; then
  echo "FAIL: keyholdd loads OpenSSL 3:"; grep -E 'libssl|libcrypto' <<<"$kmap"; fail=1
fi
if grep -qE 'libgrpc\.so' <<<"$kmap"; then
  echo "FAIL: keyholdd loads libgrpc (must be grpc_unsecure)"; fail=1
fi
if ! grep -q 'libgrpc_unsecure' <<<"$kmap"; then
  echo "FAIL: keyholdd does not link grpc_unsecure"; fail=1
fi
if ! grep -qE 'android/libssl\.so' <<<"$kmap"; then
  echo "FAIL: keyholdd does not load BoringSSL from the android directory"; fail=1
fi
for bin in "$shim" "$cli"; do
  map=$(ldd "$bin") || { echo "ldd $bin failed"; exit 1; }
  if grep -q 'android/' <<<"$map"; then
    echo "FAIL: $(basename "$bin") loads BoringSSL:"; grep android <<<"$map"; fail=1
  fi
  if grep -q 'libssl\.so' <<<"$map" && [ "$(basename "$bin")" != keyhold ]; then
    : # libgrpc itself brings libssl.so.3; that is the app's gRPC, allowed
  fi
done
[ $fail -eq 0 ] && echo "link-check: keyholdd = grpc_unsecure + BoringSSL; shim/CLI = grpc + OpenSSL 3"
exit $fail

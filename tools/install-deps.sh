#!/usr/bin/env bash
# Installs every Debian 12 package Keyhold's build, tests and demo need.
# Idempotent and non-interactive; run as root (or via sudo).
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build clang llvm libclang-rt-14-dev
  clang-format
  libgrpc-dev libgrpc29 libabsl-dev protobuf-compiler protobuf-c-compiler libprotobuf-c-dev
  android-libboringssl-dev android-libboringssl
  libssl-dev openssl libsodium-dev check libseccomp-dev libyaml-dev libcap-ng-dev
  curl nginx-light gnutls-bin iproute2 util-linux procps valgrind python3
  libjson-c-dev libcurl4-openssl-dev socat mosquitto mosquitto-clients mitmproxy
  libmicrohttpd-dev libsystemd-dev help2man python3-grpcio python3-cryptography python3-nacl python3-jwcrypto
  softhsm2 opensc p11-kit p11-kit-modules libp11-kit-dev
  systemd
  haproxy stunnel4
  nodejs npm
)

missing=()
for p in "${PKGS[@]}"; do
  # A nodejs that bundles npm (NodeSource's) conflicts with Debian's npm package.
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs (apt-get) the Debian 12 packages QuantZoo needs to build and test, skipping what is present.
# Sourced by run.sh and test.sh. Needs root for the install step (as on a fresh machine).
set -euo pipefail

QZ_APT_PACKAGES=(
  build-essential cmake pkg-config
  qt6-base-dev qt6-base-dev-tools qt6-svg-dev libgl1-mesa-dev
  libqcustomplot-dev libqcustomplot2.1-qt6
  libeigen3-dev nlohmann-json3-dev libopenblas-dev
  nodejs
  python3-numpy python3-torch
)
# Test-only: the libFuzzer stage of test.sh (tests/fuzz/run.sh) needs clang and its sanitizer runtimes.
QZ_APT_PACKAGES+=(clang-14 libclang-rt-14-dev)

qz_install_deps() {
  local missing=()
  for p in "${QZ_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "==> installing: ${missing[*]}"
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

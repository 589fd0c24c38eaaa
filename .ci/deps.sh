#!/usr/bin/env bash
# Installs (apt-get) the Debian 12 packages QuantZoo needs, skipping what is present, and says what it
# installs. Sourced by run.sh and test.sh; needs root (or sudo) for the install step, as on a fresh machine.
#   qz_install_deps run    what building and running the programs needs (run.sh)
#   qz_install_deps test   that plus what only the tests use (test.sh)
set -euo pipefail

# Build and run: compiler, CMake, Qt 6 Widgets/Svg, QCustomPlot, Eigen, nlohmann-json, OpenBLAS.
QZ_RUN_PACKAGES=(
  build-essential cmake pkg-config
  qt6-base-dev qt6-base-dev-tools qt6-svg-dev libgl1-mesa-dev
  libqcustomplot-dev libqcustomplot2.1-qt6
  libeigen3-dev nlohmann-json3-dev libopenblas-dev
)
# Tests only: Node.js for the real llama.cpp harness (tests/llama), numpy and torch for the reference
# scripts that cross-check our exports, clang and its sanitizer runtimes for the libFuzzer stage of
# test.sh (tests/fuzz/run.sh).
QZ_TEST_PACKAGES=(
  nodejs
  python3-numpy python3-torch
  clang-14 libclang-rt-14-dev
)

# Prints the packages of a list that are not installed.
qz_missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

qz_install_deps() {
  local what="${1:-run}"
  local -a run_missing test_missing=()
  mapfile -t run_missing < <(qz_missing_packages "${QZ_RUN_PACKAGES[@]}")
  if [ "$what" = test ]; then
    mapfile -t test_missing < <(qz_missing_packages "${QZ_TEST_PACKAGES[@]}")
  elif [ "$what" != run ]; then
    echo "qz_install_deps: unknown set '$what' (run or test)" >&2
    return 2
  fi
  if [ ${#run_missing[@]} -eq 0 ] && [ ${#test_missing[@]} -eq 0 ]; then
    echo "==> Debian packages for '$what': all present"
    return 0
  fi
  if [ ${#run_missing[@]} -gt 0 ]; then
    echo "==> to install for building and running: ${run_missing[*]}"
  fi
  if [ ${#test_missing[@]} -gt 0 ]; then
    echo "==> to install for the tests only: ${test_missing[*]}"
  fi
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> apt-get update"
  $SUDO apt-get update -qq
  echo "==> apt-get install ${run_missing[*]} ${test_missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${run_missing[@]}" "${test_missing[@]}"
}

#!/usr/bin/env bash
# Installs what is missing, builds QuantZoo twice (full, and the engine alone with the GUI switched
# off, which proves core/ needs no Qt Widgets), and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")"
source .ci/deps.sh
qz_install_deps

JOBS=$(nproc 2>/dev/null || echo 2)
export QT_QPA_PLATFORM=offscreen

echo "==> engine only (QZ_BUILD_GUI=OFF)"
cmake -S . -B build-nogui -DQZ_BUILD_GUI=OFF -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build-nogui -j "$JOBS"
ctest --test-dir build-nogui --output-on-failure -j "$JOBS"

echo "==> full build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$JOBS"
if [ -x tests/llama/setup.sh ]; then tests/llama/setup.sh; fi
ctest --test-dir build --output-on-failure -j "$JOBS"

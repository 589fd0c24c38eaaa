#!/usr/bin/env bash
# Installs what is missing, builds QuantZoo and opens it on the bundled demo model (stories260K).
# Without a display it runs the same job headless and writes the report and plots to ./qz-report.
set -euo pipefail
cd "$(dirname "$0")"
source .ci/deps.sh
qz_install_deps run

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$JOBS" --target quantzoo quantzoo-cli

DEMO="resources/demo/stories260K"
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec ./build/app/quantzoo "$DEMO" "$@"
fi
echo "==> no display: running the demo job headless"
OUT="$PWD/qz-report"
QT_QPA_PLATFORM=offscreen ./build/app/quantzoo --headless --report-dir "$OUT" "$DEMO" "$@"

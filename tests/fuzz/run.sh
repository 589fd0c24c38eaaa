#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang-14, ASan + UBSan) in build-fuzz and runs each one for a bounded
# time on its seed corpus. Fails on the first crash, leak, timeout or out-of-memory; the input that did it
# is left in build-fuzz/fuzz-artifacts/<harness>/.
#   tests/fuzz/run.sh [seconds per harness] [harness ...]     (default 20 s, every harness)
# Sourced by test.sh, which calls qz_fuzz_stage; also runnable on its own. QZ_FUZZ_BUILD: another build
# folder; QZ_FUZZ_CXX: another clang.
set -euo pipefail

qz_fuzz_stage() {
  local secs=${1:-20}
  shift || true
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  local b=${QZ_FUZZ_BUILD:-$root/build-fuzz}
  local jobs
  jobs=$(nproc 2>/dev/null || echo 2)
  local cxx=${QZ_FUZZ_CXX:-clang++-14}
  command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; return 1; }
  cmake -S "$root" -B "$b" -DQZ_BUILD_FUZZ=ON -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release \
    ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} > /dev/null
  cmake --build "$b" -j "$jobs"
  cmake --build "$b" --target fuzz_corpus > /dev/null

  local harnesses=("$@")
  if [ ${#harnesses[@]} -eq 0 ]; then
    for f in "$root"/tests/fuzz/fuzz_*.cpp; do
      local n
      n=$(basename "$f" .cpp)
      [ "$n" = fuzz_seeds ] || harnesses+=("${n#fuzz_}")
    done
  fi
  local failed=()
  for h in "${harnesses[@]}"; do
    # New inputs go to a scratch corpus; the seeds and the regression inputs are read only.
    local work="$b/fuzz-work/$h" art="$b/fuzz-artifacts/$h/"
    rm -rf "$work" "$art"
    mkdir -p "$work" "$art"
    local dirs=("$work" "$b/fuzz-corpus/$h")
    [ -d "$root/tests/data/fuzz-regressions/$h" ] && dirs+=("$root/tests/data/fuzz-regressions/$h")
    echo "==> fuzz_$h for ${secs} s"
    # -rss_limit_mb also bounds single allocations (malloc_limit): a header that makes a reader
    # allocate gigabytes is a finding. -timeout: one input must not take 10 s (a hang).
    if ! "$b/tests/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art" "${dirs[@]}" > "$b/fuzz-$h.log" 2>&1; then
      tail -n 60 "$b/fuzz-$h.log"
      failed+=("$h")
    fi
    grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units)' "$b/fuzz-$h.log" | tail -n 2 || true
  done
  if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crash in ${failed[*]} (inputs in $b/fuzz-artifacts/)" >&2
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  qz_fuzz_stage "$@"
fi

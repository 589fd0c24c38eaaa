#!/bin/sh
# Runs the memory and llama.cpp comparison benchmarks of tests/bench (README.md there) one after the other
# and keeps their output in BUILD_DIR/bench-results/.
#
# Usage: tests/bench/run-benches.sh [BUILD_DIR] [quick]
#   BUILD_DIR defaults to build-bench next to this repository's top folder; it must have been configured
#   (cmake -S . -B BUILD_DIR -DQZ_BUILD_GUI=OFF -DCMAKE_BUILD_TYPE=Release); the bench targets are built here.
#   "quick" uses small models (a minute instead of ~15 minutes) to check that everything runs.
# Temporary models go to $QZ_BENCH_TMP (default: $TMPDIR or /tmp, needs ~6 GB free for the full run); they are removed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-bench}
mode=${2:-full}
tmp=${QZ_BENCH_TMP:-${TMPDIR:-/tmp}}
out=$build/bench-results
mkdir -p "$out"

# llama.cpp (node-llama-cpp's prebuilt libllama) for the comparisons.
if [ ! -e "$root/tests/llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so" ]; then
    "$root/tests/llama/setup.sh"
fi

cmake --build "$build" -j2 --target bench_export_memory bench_quantize_vs_llama bench_infer_vs_llama

run() {   # name, command...
    name=$1
    shift
    echo "== $name: $*" | tee "$out/$name.txt"
    "$@" 2>&1 | tee -a "$out/$name.txt"
}

if [ "$mode" = quick ]; then
    small="--layers 2 --hidden 512 --ffn 1408 --vocab 4000 --heads 8 --kv-heads 2"
    # shellcheck disable=SC2086
    run export_memory "$build/tests/bench_export_memory" $small --shard-mb 5 --tmp "$tmp"
    # shellcheck disable=SC2086
    run quantize_vs_llama "$build/tests/bench_quantize_vs_llama" $small --tmp "$tmp"
    # shellcheck disable=SC2086
    run infer_vs_llama "$build/tests/bench_infer_vs_llama" $small --reps 2 --tmp "$tmp"
else
    # 1.1 B parameters (TinyLlama's shape), then a smaller one: the peak must not grow with the model.
    run export_memory_22 "$build/tests/bench_export_memory" --layers 22 --tmp "$tmp"
    run export_memory_6 "$build/tests/bench_export_memory" --layers 6 --tmp "$tmp"
    run quantize_vs_llama "$build/tests/bench_quantize_vs_llama" --tmp "$tmp"
    run infer_vs_llama "$build/tests/bench_infer_vs_llama" --tmp "$tmp"
fi
echo "results in $out"

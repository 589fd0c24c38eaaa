#!/usr/bin/env bash
# Installs what is missing, builds QuantZoo twice (the engine alone with the GUI switched off, which
# proves core/ needs no Qt Widgets, then everything), and runs every test with ctest: the engine's
# tests against the engine-only build, then the GUI tests and the llama.cpp tests.
set -euo pipefail
cd "$(dirname "$0")"
source .ci/deps.sh
qz_install_deps test

JOBS=$(nproc 2>/dev/null || echo 2)
export QT_QPA_PLATFORM=offscreen
# Every component is required here: a test that would skip (QTest "SKIP   :") fails instead
# (tests/CMakeLists.txt, read when cmake configures below; test_ggml_vs_libggml also checks it).
export QZ_REQUIRE_ALL=1

# Real llama.cpp (npm node-llama-cpp, pinned): the engine's tests compare our quantizers with its
# libggml, and the llama tests load our exports in it.
tests/llama/setup.sh

echo "==> engine only (QZ_BUILD_GUI=OFF)"
cmake -S . -B build-nogui -DQZ_BUILD_GUI=OFF -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build-nogui -j "$JOBS"
ctest --test-dir build-nogui --output-on-failure -j "$JOBS" -L core

# Results must not depend on the CPU's BLAS kernel nor on the thread counts: the engine's tests that touch
# BLAS, threads or numerics again, with OpenBLAS forced onto another kernel (Sandybridge: AVX, which every
# x86-64 CI machine of the last decade runs; Prescott where there is no AVX) and other OpenBLAS and
# QuantZoo thread counts. (Not the whole label: the model-level GPTQ / EXL2 tests double its time.)
CORETYPE=Sandybridge
grep -qw avx /proc/cpuinfo 2>/dev/null || CORETYPE=Prescott
echo "==> engine again: OPENBLAS_CORETYPE=$CORETYPE OPENBLAS_NUM_THREADS=3 QZ_THREADS=3"
OPENBLAS_CORETYPE=$CORETYPE OPENBLAS_NUM_THREADS=3 QZ_THREADS=3 \
  ctest --test-dir build-nogui --output-on-failure -j "$JOBS" -L core \
  -R '^test_(gptq_quant|exl2_quant|imatrix_collect|infer|infer_ppl|llm_int8|kquants|histogram|simple_quant)$'

echo "==> full build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
# Only what the GUI and llama.cpp tests need: the engine's tests were built and run above
# (make_tiny_models writes the llama tests' tiny models of each architecture).
GUI_TESTS=$(for f in tests/gui/test_*.cpp; do basename "$f" .cpp; done)
cmake --build build -j "$JOBS" --target quantzoo quantzoo-cli make_tiny_models $GUI_TESTS
# The engine's tests (label core) already ran against the engine-only build above; here the GUI tests
# and real llama.cpp on our exports.
ctest --test-dir build --output-on-failure -j "$JOBS" -L 'gui|llama'


# ---- fuzz stage: every file reader under libFuzzer with ASan + UBSan, 20 s per harness on its seed
# corpus and regression inputs (tests/fuzz/README.md); any crash, leak, hang or huge allocation fails CI.
echo "==> fuzzing the file readers"
source tests/fuzz/run.sh
qz_fuzz_stage 20
# ---- end of fuzz stage

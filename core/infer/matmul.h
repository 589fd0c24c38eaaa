// Y = W·X for the engine's linear layers: W row-major [nOut][nIn], X column-major [nIn × n] (token t's
// input at X + t·nIn), Y column-major [nOut × n] (token t's output at Y + t·ldy). Every output is a dot
// product of two contiguous vectors. On CPUs with AVX2+FMA (checked at run time) a hand-written kernel
// computes 4 rows × 3 tokens at a time with 8-wide FMAs (the library itself is built for baseline
// x86-64, so Eigen only has SSE there); otherwise Eigen's GEMM is used. Rows are split over threads.
#pragma once

#include <cstdint>

namespace qz {

void linearForward(const float* W, int64_t nOut, int64_t nIn, const float* X, int64_t n, float* Y, int64_t ldy,
                   int threads);

// General strided form, single-threaded: C[i + j·ldc] = Σ_k A[i·lda + k]·B[j·ldb + k] for i < nA, j < nB,
// k < len (attention scores: A = keys, B = queries).
void dotProducts(const float* A, int64_t lda, int64_t nA, const float* B, int64_t ldb, int64_t nB, int64_t len,
                 float* C, int64_t ldc);

// The same with Eigen's GEMM regardless of the CPU (reference for tests and benchmarks).
void linearForwardEigen(const float* W, int64_t nOut, int64_t nIn, const float* X, int64_t n, float* Y, int64_t ldy,
                        int threads);

// Which kernel linearForward uses on this CPU ("avx2-fma" or "eigen"); QZ_NO_AVX2=1 forces Eigen.
const char* linearKernelName();

}  // namespace qz

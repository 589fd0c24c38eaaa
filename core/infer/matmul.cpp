#include "infer/matmul.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <immintrin.h>

#include "common/parallel.h"

namespace qz {

namespace {

#if defined(__x86_64__) || defined(__i386__)
#define QZ_HAVE_AVX2_KERNEL 1

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehl_ps(lo, lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_shuffle_ps(lo, lo, 0x1);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

// Dot products of rows [r0, r0+R) of W with tokens [t0, t0+T) of X, R <= 4, T <= 3.
template <int R, int T>
__attribute__((target("avx2,fma"))) void block(const float* W, int64_t ldw, int64_t nIn, const float* X, int64_t ldx,
                                               float* Y, int64_t ldy, int64_t r0, int64_t t0) {
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const float* w[R];
    const float* x[T];
    for (int r = 0; r < R; ++r) w[r] = W + (r0 + r) * ldw;
    for (int t = 0; t < T; ++t) x[t] = X + (t0 + t) * ldx;
    const int64_t n8 = nIn & ~int64_t(7);
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x[t] + i);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = _mm256_loadu_ps(w[r] + i);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) {
            float s = hsum(acc[r][t]);
            for (int64_t i = n8; i < nIn; ++i) s += w[r][i] * x[t][i];
            Y[(t0 + t) * ldy + r0 + r] = s;
        }
}

template <int R>
__attribute__((target("avx2,fma"))) void rowBlock(const float* W, int64_t ldw, int64_t nIn, const float* X,
                                                  int64_t ldx, int64_t n, float* Y, int64_t ldy, int64_t r0) {
    int64_t t = 0;
    for (; t + 3 <= n; t += 3) block<R, 3>(W, ldw, nIn, X, ldx, Y, ldy, r0, t);
    if (n - t == 2) block<R, 2>(W, ldw, nIn, X, ldx, Y, ldy, r0, t);
    else if (n - t == 1) block<R, 1>(W, ldw, nIn, X, ldx, Y, ldy, r0, t);
}

__attribute__((target("avx2,fma"))) void avx2Rows(const float* W, int64_t ldw, int64_t nIn, const float* X,
                                                  int64_t ldx, int64_t n, float* Y, int64_t ldy, int64_t r0,
                                                  int64_t r1) {
    // Tokens in panels so that a panel of X stays in L2 while all rows of the range pass over it.
    const int64_t panel = std::max<int64_t>(3, ((256 * 1024 / 4) / std::max<int64_t>(nIn, 1)) / 3 * 3);
    for (int64_t p0 = 0; p0 < n; p0 += panel) {
        const int64_t pn = std::min(panel, n - p0);
        const float* Xp = X + p0 * ldx;
        float* Yp = Y + p0 * ldy;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) rowBlock<4>(W, ldw, nIn, Xp, ldx, pn, Yp, ldy, r);
        for (; r < r1; ++r) rowBlock<1>(W, ldw, nIn, Xp, ldx, pn, Yp, ldy, r);
    }
}

bool detectAvx2() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define QZ_HAVE_AVX2_KERNEL 0
bool detectAvx2() { return false; }
#endif

bool useAvx2() {
    static const bool yes = detectAvx2();
    return yes;
}

}  // namespace

const char* linearKernelName() { return useAvx2() ? "avx2-fma" : "eigen"; }

namespace {

void linearImpl(bool avx, const float* W, int64_t ldw, int64_t nOut, int64_t nIn, const float* X, int64_t ldx,
                int64_t n, float* Y, int64_t ldy, int threads) {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
    const double work = static_cast<double>(nOut) * nIn * n;
    const int t = work < 200000 ? 1 : threads;
    // Chunks of whole 4-row blocks.
    const size_t blocks = static_cast<size_t>((nOut + 3) / 4);
    parallelFor(blocks, [&](size_t b0, size_t b1, int) {
        const int64_t r0 = static_cast<int64_t>(b0) * 4, r1 = std::min<int64_t>(nOut, static_cast<int64_t>(b1) * 4);
#if QZ_HAVE_AVX2_KERNEL
        if (avx) {
            avx2Rows(W, ldw, nIn, X, ldx, n, Y, ldy, r0, r1);
            return;
        }
#endif
        (void)avx;
        const Eigen::Map<const Mat, 0, Eigen::OuterStride<>> Wt(W, nIn, nOut, Eigen::OuterStride<>(ldw));
        const Eigen::Map<const Mat, 0, Eigen::OuterStride<>> Xm(X, nIn, n, Eigen::OuterStride<>(ldx));
        Eigen::Map<Mat, 0, Eigen::OuterStride<>> Ym(Y, nOut, n, Eigen::OuterStride<>(ldy));
        Ym.middleRows(r0, r1 - r0).noalias() = Wt.middleCols(r0, r1 - r0).transpose() * Xm;
    }, t, 4);
}

}  // namespace

void linearForward(const float* W, int64_t nOut, int64_t nIn, const float* X, int64_t n, float* Y, int64_t ldy,
                   int threads) {
    linearImpl(useAvx2(), W, nIn, nOut, nIn, X, nIn, n, Y, ldy, threads);
}

void dotProducts(const float* A, int64_t lda, int64_t nA, const float* B, int64_t ldb, int64_t nB, int64_t len,
                 float* C, int64_t ldc) {
    linearImpl(useAvx2(), A, lda, nA, len, B, ldb, nB, C, ldc, 1);
}

void linearForwardEigen(const float* W, int64_t nOut, int64_t nIn, const float* X, int64_t n, float* Y, int64_t ldy,
                        int threads) {
    linearImpl(false, W, nIn, nOut, nIn, X, nIn, n, Y, ldy, threads);
}

}  // namespace qz

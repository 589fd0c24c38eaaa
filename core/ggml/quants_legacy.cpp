// Legacy ggml quantizers (README.md B.5, B.6). Float evaluation order follows the reference.
#include "ggml/quants_legacy.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "ggml/block_types.h"
#include "ggml/quant_helpers.h"
#include "ggml/vec_dot_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QZ_LEGACY_X86 1
#else
#define QZ_LEGACY_X86 0
#endif

namespace qz::ggml {

namespace {

// (int8_t)(v) / (uint8_t)(v) of the reference for the in-range values these quantizers produce.
inline int truncToInt(float v) { return static_cast<int>(v); }

// Signed value of largest magnitude in a block (first wins on ties).
inline float signedAbsMax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

inline void minMax(const float* x, int n, float& min, float& max) {
    min = FLT_MAX;
    max = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
}

// Mean of x^2 over a whole row (sigma^2 of the imatrix paths).
inline float rowSigma2(const float* x, int64_t n) {
    float sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += x[j] * x[j];
    return sum / static_cast<float>(n);
}

inline void imatrixWeights(const float* xb, const float* qw, float sigma2, float* w, int n) {
    for (int j = 0; j < n; ++j) w[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

inline void pack5(const uint8_t* L, uint8_t* qs, uint8_t* qhOut) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const uint8_t a = L[j], b = L[j + 16];
        qs[j] = static_cast<uint8_t>((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= ((a & 0x10u) >> 4) << j;
        qh |= ((b & 0x10u) >> 4) << (j + 16);
    }
    std::memcpy(qhOut, &qh, 4);
}

// ---- imatrix rows --------------------------------------------------------------------------------

void rowQ4_0Impl(const float* x, BlockQ4_0* y, int64_t n, const float* qw) {
    float w[32];
    int8_t L[32];
    const float sigma2 = rowSigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float* xb = x + 32 * ib;
        imatrixWeights(xb, qw + 32 * ib, sigma2, w, 32);
        const float d = make_qx_quants(32, 8, xb, L, 1, w);
        y[ib].d = fp32ToFp16(d);
        for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
    }
}

void rowQ5_0Impl(const float* x, BlockQ5_0* y, int64_t n, const float* qw) {
    float w[32];
    int8_t L[32];
    const float sigma2 = rowSigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float* xb = x + 32 * ib;
        imatrixWeights(xb, qw + 32 * ib, sigma2, w, 32);
        const float d = make_qx_quants(32, 16, xb, L, 1, w);
        y[ib].d = fp32ToFp16(d);
        uint8_t U[32];
        for (int j = 0; j < 32; ++j) U[j] = static_cast<uint8_t>(L[j]);
        pack5(U, y[ib].qs, y[ib].qh);
    }
}

template <class Block, int Nmax>
void rowQx_1Impl(const float* x, Block* y, int64_t n, const float* qw) {
    float w[32];
    uint8_t L[32], Laux[32];
    const float sigma2 = rowSigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float* xb = x + 32 * ib;
        imatrixWeights(xb, qw + 32 * ib, sigma2, w, 32);
        float min;
        const float d = make_qkx3_quants(32, Nmax, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[ib].d = fp32ToFp16(d);
        y[ib].m = fp32ToFp16(-min);
        if constexpr (Nmax == 15) {
            for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
        } else {
            pack5(L, y[ib].qs, y[ib].qh);
        }
    }
}

template <class Fn>
void forRows(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, size_t blockBytes, Fn fn) {
    const size_t rowBytes = static_cast<size_t>(ncols / 32) * blockBytes;
    for (int64_t r = 0; r < nrows; ++r) fn(src + r * ncols, dst + static_cast<size_t>(r) * rowBytes);
}

}  // namespace

// ---- reference rows ------------------------------------------------------------------------------

void quantizeRowQ4_0Ref(const float* x, uint8_t* dst, int64_t k) {
    auto* y = reinterpret_cast<BlockQ4_0*>(dst);
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        const float max = signedAbsMax(x, 32);
        const float d = max / -8;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        for (int j = 0; j < 16; ++j) {
            const float x0 = x[j] * id, x1 = x[16 + j] * id;
            const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(truncToInt(x0 + 8.5f))));
            const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(truncToInt(x1 + 8.5f))));
            y[i].qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
        }
    }
}

void quantizeRowQ4_1Ref(const float* x, uint8_t* dst, int64_t k) {
    auto* y = reinterpret_cast<BlockQ4_1*>(dst);
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        float min, max;
        minMax(x, 32, min, max);
        const float d = (max - min) / 15;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        y[i].m = fp32ToFp16(min);
        for (int j = 0; j < 16; ++j) {
            const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(truncToInt(x0 + 0.5f))));
            const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(truncToInt(x1 + 0.5f))));
            y[i].qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
        }
    }
}

void quantizeRowQ5_0Ref(const float* x, uint8_t* dst, int64_t k) {
    auto* y = reinterpret_cast<BlockQ5_0*>(dst);
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        const float max = signedAbsMax(x, 32);
        const float d = max / -16;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        uint8_t L[32];
        for (int j = 0; j < 32; ++j) {
            const int q = std::min(31, static_cast<int>(static_cast<int8_t>(truncToInt(x[j] * id + 16.5f))));
            L[j] = static_cast<uint8_t>(q);
        }
        pack5(L, y[i].qs, y[i].qh);
    }
}

void quantizeRowQ5_1Ref(const float* x, uint8_t* dst, int64_t k) {
    auto* y = reinterpret_cast<BlockQ5_1*>(dst);
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        float min, max;
        minMax(x, 32, min, max);
        const float d = (max - min) / 31;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        y[i].m = fp32ToFp16(min);
        uint8_t L[32];
        for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(truncToInt((x[j] - min) * id + 0.5f));
        pack5(L, y[i].qs, y[i].qh);
    }
}

// static_cast<int8_t>(std::roundf(v)) without the libm call (roundf has no instruction on baseline x86-64):
// for |v| < 2^22, (int)v truncates and v - trunc(v) is exact, so halves go away from zero as in roundf.
// Other values (NaN, inf, huge) take roundf itself. Checked equal on every float in [2^-3, 2^9) of both
// signs and on 2e8 random bit patterns.
namespace {
inline int8_t roundToInt8(float v) {
    if (!(std::fabs(v) < 4194304.f)) return static_cast<int8_t>(std::roundf(v));
    const int t = static_cast<int>(v);
    const float frac = v - static_cast<float>(t);
    return static_cast<int8_t>(t + (frac >= 0.5f ? 1 : 0) - (frac <= -0.5f ? 1 : 0));
}
}  // namespace

void quantizeRowQ8_0Ref(const float* x, uint8_t* dst, int64_t k) {
    auto* y = reinterpret_cast<BlockQ8_0*>(dst);
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        for (int j = 0; j < 32; ++j) y[i].qs[j] = roundToInt8(x[j] * id);
    }
}

// ---- whole rows ----------------------------------------------------------------------------------

void quantizeRowsQ4_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    if (!imatrix) return quantizeRowQ4_0Ref(src, dst, nrows * ncols);
    forRows(src, dst, nrows, ncols, sizeof(BlockQ4_0), [&](const float* x, uint8_t* d) {
        rowQ4_0Impl(x, reinterpret_cast<BlockQ4_0*>(d), ncols, imatrix);
    });
}

void quantizeRowsQ4_1(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    if (!imatrix) return quantizeRowQ4_1Ref(src, dst, nrows * ncols);
    forRows(src, dst, nrows, ncols, sizeof(BlockQ4_1), [&](const float* x, uint8_t* d) {
        rowQx_1Impl<BlockQ4_1, 15>(x, reinterpret_cast<BlockQ4_1*>(d), ncols, imatrix);
    });
}

void quantizeRowsQ5_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    if (!imatrix) return quantizeRowQ5_0Ref(src, dst, nrows * ncols);
    forRows(src, dst, nrows, ncols, sizeof(BlockQ5_0), [&](const float* x, uint8_t* d) {
        rowQ5_0Impl(x, reinterpret_cast<BlockQ5_0*>(d), ncols, imatrix);
    });
}

void quantizeRowsQ5_1(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    if (!imatrix) return quantizeRowQ5_1Ref(src, dst, nrows * ncols);
    forRows(src, dst, nrows, ncols, sizeof(BlockQ5_1), [&](const float* x, uint8_t* d) {
        rowQx_1Impl<BlockQ5_1, 31>(x, reinterpret_cast<BlockQ5_1*>(d), ncols, imatrix);
    });
}

#if QZ_LEGACY_X86
namespace {
// quantizeRowQ8_0Ref with AVX2, the same bytes: the block maximum of |x| is a max (order-free without
// NaN, and _mm256_max_ps(|x|, m) keeps m when |x| is NaN, as std::max(m, |x|) does); d and 1/d are the
// scalar ones; x * id is one IEEE product per lane as in the scalar loop; and roundf (half away from
// zero) is trunc(v) plus one step away from zero when |v - trunc(v)| >= 0.5 (v - trunc(v) is exact).
// A block whose scaled values are not all finite and below 2^22 takes the scalar path.
__attribute__((target("avx2,fma,f16c"))) void quantizeRowQ8_0Avx2(const float* x, uint8_t* dst, int64_t k) {
    auto* y = reinterpret_cast<BlockQ8_0*>(dst);
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 limit = _mm256_set1_ps(4194304.f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int b = 0; b < 4; ++b) {
            v[b] = _mm256_loadu_ps(x + 8 * b);
            m = _mm256_max_ps(_mm256_andnot_ps(signBit, v[b]), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        bool inRange = true;
        for (int b = 0; b < 4; ++b) {
            const __m256 s = _mm256_mul_ps(v[b], vid);
            // NaN compares false: an unordered lane leaves the fast path too.
            inRange &= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(signBit, s), limit, _CMP_LT_OQ)) == 0xFF;
            const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(signBit, _mm256_sub_ps(s, t));
            const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                              _mm256_or_ps(one, _mm256_and_ps(signBit, s)));
            q[b] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
        }
        if (!inRange) {
            quantizeRowQ8_0Ref(x, reinterpret_cast<uint8_t*>(&y[i]), 32);
            continue;
        }
        const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), perm);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), p);
    }
}
}  // namespace
#endif

void quantizeRowsQ8_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    // ggml ignores the imatrix for Q8_0
#if QZ_LEGACY_X86
    if (vecdot::haveAvx2()) return quantizeRowQ8_0Avx2(src, dst, nrows * ncols);
#endif
    quantizeRowQ8_0Ref(src, dst, nrows * ncols);
}

void convertRowF16(const float* x, uint16_t* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp32ToFp16(x[i]);
}

void convertRowBF16(const float* x, uint16_t* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp32ToBf16(x[i]);
}

}  // namespace qz::ggml

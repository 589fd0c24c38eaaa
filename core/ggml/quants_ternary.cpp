#include "ggml/quants_ternary.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "common/fp16.h"
#include "ggml/block_types.h"

namespace qz::ggml {

namespace {

// A block's trits t[i] = lroundf(x[i]*id) + 1 (kept as their low 8 bits: the packing below works in uint8
// arithmetic as ggml's does), and d = max|x| (NaN elements skipped, as std::max(amax, |x|) skips them).
float tritsPortable(const float* x, uint8_t* t) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float id = amax != 0.f ? 1.0f / amax : 0.0f;
    for (int j = 0; j < QK_K; ++j)
        t[j] = static_cast<uint8_t>(static_cast<int>(std::lroundf(x[j] * id)) + 1);
    return amax;
}

#if defined(__x86_64__) || defined(__i386__)
// The same with AVX2: max is exact (max_ps(|x|, acc) keeps acc for a NaN x); lroundf as trunc(v) plus the
// exact fraction v - trunc(v) compared with +-0.5 (half away from zero). Out-of-range values and NaN give
// INT_MIN from the conversion, whose low 8 bits (0) are those of lroundf's result cast to int.
__attribute__((target("avx2"))) float tritsAvx2(const float* x, uint8_t* t) {
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 acc = _mm256_setzero_ps();
    for (int j = 0; j < QK_K; j += 8)
        acc = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), absMask), acc);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    const float amax = _mm_cvtss_f32(m);
    const float id = amax != 0.f ? 1.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f);
    const __m256i one = _mm256_set1_epi32(1);
    for (int j = 0; j < QK_K; j += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vid);
            const __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 f = _mm256_sub_ps(v, r);
            // compare masks are -1 where true: trunc - (f >= 0.5) + (f <= -0.5) in mask arithmetic
            const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(f, half, _CMP_GE_OQ));
            const __m256i down = _mm256_castps_si256(_mm256_cmp_ps(f, mhalf, _CMP_LE_OQ));
            q[k] =
                _mm256_add_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_cvttps_epi32(r), up), down), one);
        }
        // low bytes of the 32 ints, in order
        const __m256i byteMask = _mm256_set1_epi32(0xFF);
        const __m256i a =
            _mm256_packus_epi32(_mm256_and_si256(q[0], byteMask), _mm256_and_si256(q[1], byteMask));
        const __m256i b =
            _mm256_packus_epi32(_mm256_and_si256(q[2], byteMask), _mm256_and_si256(q[3], byteMask));
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + j), _mm256_shuffle_epi32(p, 0xD8));
    }
    return amax;
}

bool detectAvx2() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

float trits(const float* x, uint8_t* t) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return tritsAvx2(x, t);
#endif
    return tritsPortable(x, t);
}

// ceil(q * 256 / 243): the base-3 number as a fraction of 3^5, in 8 bits
inline uint8_t scaleTrits(uint8_t q) { return static_cast<uint8_t>((static_cast<uint16_t>(q) * 256 + 242) / 243); }

}  // namespace

void quantizeRowsTQ1_0(const float* x, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    auto* y = reinterpret_cast<BlockTQ1_0*>(dst);
    const int64_t nb = nrows * ncols / QK_K;
    uint8_t t[QK_K];
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        y[i].d = fp32ToFp16(trits(x, t));
        // 5 trits per byte: 32 bytes over 160 weights, then 16 bytes over 80 weights
        uint8_t q[32] = {};
        for (int n = 0; n < 5; ++n)
            for (int m = 0; m < 32; ++m)
                q[m] = static_cast<uint8_t>(q[m] * 3 + t[m + n * 32]);
        for (int m = 0; m < 32; ++m)
            y[i].qs[m] = scaleTrits(q[m]);
        uint8_t q2[16] = {};
        for (int n = 0; n < 5; ++n)
            for (int m = 0; m < 16; ++m)
                q2[m] = static_cast<uint8_t>(q2[m] * 3 + t[160 + m + n * 16]);
        for (int m = 0; m < 16; ++m)
            y[i].qs[32 + m] = scaleTrits(q2[m]);
        // 4 trits per byte over the last 16 weights, the first in the most significant trit
        for (int j = 0; j < 4; ++j) {
            uint8_t qh = 0;
            for (int m = 0; m < 4; ++m)
                qh = static_cast<uint8_t>(qh * 3 + t[240 + j + m * 4]);
            y[i].qh[j] = scaleTrits(static_cast<uint8_t>(qh * 3));
        }
    }
}

void quantizeRowsTQ2_0(const float* x, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    auto* y = reinterpret_cast<BlockTQ2_0*>(dst);
    const int64_t nb = nrows * ncols / QK_K;
    uint8_t t[QK_K];
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        y[i].d = fp32ToFp16(trits(x, t));
        for (int j = 0; j < 64; j += 32) {
            const uint8_t* tj = t + 128 * (j / 32);
            for (int m = 0; m < 32; ++m) {
                int q = 0;
                for (int n = 0; n < 4; ++n)
                    q += (tj[m + n * 32] & 3) << (2 * n);
                y[i].qs[j + m] = static_cast<uint8_t>(q);
            }
        }
    }
}

}  // namespace qz::ggml

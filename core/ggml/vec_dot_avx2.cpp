// AVX2 dot kernels on the unpacked weight forms (vec_dot_impl.h). The library is built for baseline
// x86-64, so these functions carry target attributes and are called only after haveAvx2() checked
// the CPU at run time (as infer/matmul.cpp does). Integer products are exact: |q| <= 127 and
// |y| <= 128 keep maddubs' pair sums below 2^15; float terms are accumulated per lane (README.md D.3).
#include <cstdlib>
#include <cstring>

#include "ggml/vec_dot_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QZ_VECDOT_X86 1
#else
#define QZ_VECDOT_X86 0
#endif

namespace qz::ggml::vecdot {

#if QZ_VECDOT_X86

namespace {

#define QZ_AVX2 __attribute__((target("avx2,fma,f16c")))

QZ_AVX2 inline float hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// 16 pair sums of q·y over 32 int8 values (q never -128).
QZ_AVX2 inline __m256i mulPairs(__m256i q, __m256i y) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
}

bool detect() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

} // namespace

bool haveAvx2() {
    static const bool yes = detect();
    return yes;
}

QZ_AVX2 float dotKAvx2(const UnpackedK* w, const BlockQ8_K* y, int64_t nb) {
    __m256 acc = _mm256_setzero_ps(), accMin = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const UnpackedK& u = w[b];
        const int8_t* qy = y[b].qs;
        __m256i isum = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
            const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.q + 32 * k));
            const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy + 32 * k));
            const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(u.sc[2 * k + 1]), _mm_set1_epi16(u.sc[2 * k]));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(mulPairs(q, a), sc));
        }
        const float yd = y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * u.d), _mm256_cvtepi32_ps(isum), acc);
        const __m256i mn = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.mn));
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].bsums));
        accMin = _mm256_fmadd_ps(_mm256_set1_ps(yd * u.dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bs)),
                                 accMin);
    }
    return hsum8(_mm256_sub_ps(acc, accMin));
}

QZ_AVX2 float dotB32Avx2(const UnpackedB32* w, const uint8_t* y, int64_t nb, bool q81) {
    const size_t bs = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    const size_t qsOff = q81 ? 4 : 2;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.f;
    for (int64_t b = 0; b < nb; ++b, y += bs) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].q));
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + qsOff));
        const __m256i s32 = _mm256_madd_epi16(mulPairs(q, a), ones);
        uint16_t h;
        std::memcpy(&h, y, 2);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(w[b].d * _cvtsh_ss(h)), _mm256_cvtepi32_ps(s32), acc);
        if (q81) {
            std::memcpy(&h, y + 2, 2);
            mins += w[b].m * _cvtsh_ss(h);
        }
    }
    return hsum8(acc) + mins;
}

QZ_AVX2 float dotF32Avx2(const float* a, const float* b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i)
        sum += a[i] * b[i];
    return sum;
}

QZ_AVX2 void decodeF16Avx2(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i)
        dst[i] = _cvtsh_ss(src[i]);
}

#else

bool haveAvx2() {
    return false;
}
float dotKAvx2(const UnpackedK* w, const BlockQ8_K* y, int64_t nb) {
    return dotKScalar(w, y, nb);
}
float dotB32Avx2(const UnpackedB32* w, const uint8_t* y, int64_t nb, bool q81) {
    return dotB32Scalar(w, y, nb, q81);
}
float dotF32Avx2(const float* a, const float* b, int64_t n) {
    return dotF32Scalar(a, b, n);
}
void decodeF16Avx2(const uint16_t*, float*, int64_t) {}

#endif

} // namespace qz::ggml::vecdot

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

namespace {

template <int T> QZ_AVX2 void dotKT(const UnpackedK* w, const BlockQ8_K* const* y, int64_t nb, float* out) {
    __m256 acc[T], accMin[T];
    for (int t = 0; t < T; ++t)
        acc[t] = accMin[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const UnpackedK& u = w[b];
        __m256i isum[T];
        for (int t = 0; t < T; ++t)
            isum[t] = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
            const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.q + 32 * k));
            const __m256i aq = _mm256_sign_epi8(q, q);
            const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(u.sc[2 * k + 1]), _mm_set1_epi16(u.sc[2 * k]));
            for (int t = 0; t < T; ++t) {
                const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].qs + 32 * k));
                const __m256i p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sc));
            }
        }
        const __m256i mn = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.mn));
        for (int t = 0; t < T; ++t) {
            const float yd = y[t][b].d;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(yd * u.d), _mm256_cvtepi32_ps(isum[t]), acc[t]);
            const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].bsums));
            accMin[t] = _mm256_fmadd_ps(_mm256_set1_ps(yd * u.dmin),
                                        _mm256_cvtepi32_ps(_mm256_madd_epi16(mn, bs)), accMin[t]);
        }
    }
    for (int t = 0; t < T; ++t)
        out[t] = hsum8(_mm256_sub_ps(acc[t], accMin[t]));
}

template <int T>
QZ_AVX2 void dotB32T(const UnpackedB32* w, const uint8_t* const* y, int64_t nb, bool q81, float* out) {
    const size_t bs = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    const size_t qsOff = q81 ? 4 : 2;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[T];
    float mins[T];
    for (int t = 0; t < T; ++t)
        acc[t] = _mm256_setzero_ps(), mins[t] = 0.f;
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].q));
        const __m256i aq = _mm256_sign_epi8(q, q);
        for (int t = 0; t < T; ++t) {
            const uint8_t* yb = y[t] + b * bs;
            const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb + qsOff));
            const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q)), ones);
            uint16_t h;
            std::memcpy(&h, yb, 2);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(w[b].d * _cvtsh_ss(h)), _mm256_cvtepi32_ps(s32), acc[t]);
            if (q81) {
                std::memcpy(&h, yb + 2, 2);
                mins[t] += w[b].m * _cvtsh_ss(h);
            }
        }
    }
    for (int t = 0; t < T; ++t)
        out[t] = hsum8(acc[t]) + mins[t];
}

template <int T> QZ_AVX2 void dotF32T(const float* a, const float* const* b, int64_t n, float* out) {
    __m256 s0[T], s1[T];
    for (int t = 0; t < T; ++t)
        s0[t] = s1[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = _mm256_loadu_ps(a + i), w1 = _mm256_loadu_ps(a + i + 8);
        for (int t = 0; t < T; ++t) {
            s0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b[t] + i), s0[t]);
            s1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b[t] + i + 8), s1[t]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 w0 = _mm256_loadu_ps(a + i);
        for (int t = 0; t < T; ++t)
            s0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b[t] + i), s0[t]);
    }
    for (int t = 0; t < T; ++t) {
        float sum = hsum8(_mm256_add_ps(s0[t], s1[t]));
        for (int64_t k = i; k < n; ++k)
            sum += a[k] * b[t][k];
        out[t] = sum;
    }
}

} // namespace

void dotKAvx2(const UnpackedK* w, const BlockQ8_K* const* y, int nt, int64_t nb, float* out) {
    switch (nt) {
    case 1:
        dotKT<1>(w, y, nb, out);
        break;
    case 2:
        dotKT<2>(w, y, nb, out);
        break;
    case 3:
        dotKT<3>(w, y, nb, out);
        break;
    default:
        dotKT<4>(w, y, nb, out);
        break;
    }
}

void dotB32Avx2(const UnpackedB32* w, const uint8_t* const* y, int nt, int64_t nb, bool q81, float* out) {
    switch (nt) {
    case 1:
        dotB32T<1>(w, y, nb, q81, out);
        break;
    case 2:
        dotB32T<2>(w, y, nb, q81, out);
        break;
    case 3:
        dotB32T<3>(w, y, nb, q81, out);
        break;
    default:
        dotB32T<4>(w, y, nb, q81, out);
        break;
    }
}

void dotF32Avx2(const float* a, const float* const* b, int nt, int64_t n, float* out) {
    switch (nt) {
    case 1:
        dotF32T<1>(a, b, n, out);
        break;
    case 2:
        dotF32T<2>(a, b, n, out);
        break;
    case 3:
        dotF32T<3>(a, b, n, out);
        break;
    default:
        dotF32T<4>(a, b, n, out);
        break;
    }
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
void dotKAvx2(const UnpackedK* w, const BlockQ8_K* const* y, int nt, int64_t nb, float* out) {
    for (int t = 0; t < nt; ++t)
        out[t] = dotKScalar(w, y[t], nb);
}
void dotB32Avx2(const UnpackedB32* w, const uint8_t* const* y, int nt, int64_t nb, bool q81, float* out) {
    for (int t = 0; t < nt; ++t)
        out[t] = dotB32Scalar(w, y[t], nb, q81);
}
void dotF32Avx2(const float* a, const float* const* b, int nt, int64_t n, float* out) {
    for (int t = 0; t < nt; ++t)
        out[t] = dotF32Scalar(a, b[t], n);
}
void decodeF16Avx2(const uint16_t*, float*, int64_t) {}

#endif

} // namespace qz::ggml::vecdot

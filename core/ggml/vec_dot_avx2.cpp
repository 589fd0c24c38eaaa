// AVX2 dot kernels on the unpacked weight forms (vec_dot_impl.h). The library is built for baseline
// x86-64, so these functions carry target attributes and are called only after haveAvx2() checked
// the CPU at run time (as infer/matmul.cpp does). Integer products are exact: |q| <= 127 and
// |y| <= 128 keep maddubs' pair sums below 2^15; float terms are accumulated per lane (README.md D.3).
#include <cstdlib>
#include <cstring>

#include "common/dtype.h"
#include "common/fp16.h"
#include "ggml/iq_grids.h"
#include "ggml/vec_dot_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
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
    // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

} // namespace

bool haveAvx2() {
    static const bool yes = detect();
    return yes;
}

namespace {

// The 8 int32 lanes of v[0..T) summed, one integer per vector (T <= 4).
template <int T> QZ_AVX2 inline void hsumInts(const __m256i* v, int32_t* out) {
    const __m256i z = _mm256_setzero_si256();
    const __m256i h01 = _mm256_hadd_epi32(v[0], T > 1 ? v[1] : z);
    const __m256i h23 = _mm256_hadd_epi32(T > 2 ? v[2] : z, T > 3 ? v[3] : z);
    const __m256i h = _mm256_hadd_epi32(h01, h23);
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    alignas(16) int32_t tmp[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), s);
    for (int t = 0; t < T; ++t)
        out[t] = tmp[t];
}

// Per block and token: the exact integer sum (offset removed through the activation's bsums), then
// the same float expression as dotKScalar, so both give the same bits.
template <int T, bool Signed, bool Mins>
QZ_AVX2 void dotKT(const UnpackedK* w, const BlockQ8_K* const* y, int64_t nb, float* out) {
    float sum[T];
    for (int t = 0; t < T; ++t)
        sum[t] = 0.f;
    for (int64_t b = 0; b < nb; ++b) {
        const UnpackedK& u = w[b];
        __m256i isum[T];
        for (int t = 0; t < T; ++t)
            isum[t] = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
            const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.q + 32 * k));
            const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(u.sc[2 * k + 1]), _mm_set1_epi16(u.sc[2 * k]));
            if constexpr (Signed) {
                const __m256i aq = _mm256_sign_epi8(q, q);
                for (int t = 0; t < T; ++t) {
                    const __m256i a =
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].qs + 32 * k));
                    const __m256i p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sc));
                }
            } else {
                for (int t = 0; t < T; ++t) {
                    const __m256i a =
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].qs + 32 * k));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), sc));
                }
            }
        }
        const __m256i so = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.so));
        const __m256i mn = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.mn));
        __m256i msum[T];
        for (int t = 0; t < T; ++t) {
            const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].bsums));
            if constexpr (!Signed) isum[t] = _mm256_sub_epi32(isum[t], _mm256_madd_epi16(so, bs));
            if constexpr (Mins) msum[t] = _mm256_madd_epi16(mn, bs);
        }
        int32_t is[T], ms[T] = {};
        hsumInts<T>(isum, is);
        if constexpr (Mins) hsumInts<T>(msum, ms);
        for (int t = 0; t < T; ++t) {
            const float yd = y[t][b].d;
            sum[t] += (yd * u.d) * static_cast<float>(is[t]) - (yd * u.dmin) * static_cast<float>(ms[t]);
        }
    }
    for (int t = 0; t < T; ++t)
        out[t] = sum[t];
}

// Two weight rows against T tokens: each activation chunk is loaded once for both rows (the
// activations of all tokens do not fit L1). Per row the same integers and float expression as dotKT.
template <int T, bool Signed, bool Mins>
QZ_AVX2 void dotK2T(const UnpackedK* w0, const UnpackedK* w1, const BlockQ8_K* const* y, int64_t nb,
                    float* out0, float* out1) {
    float sum0[T], sum1[T];
    for (int t = 0; t < T; ++t)
        sum0[t] = sum1[t] = 0.f;
    for (int64_t b = 0; b < nb; ++b) {
        const UnpackedK& u0 = w0[b];
        const UnpackedK& u1 = w1[b];
        __m256i i0[T], i1[T];
        for (int t = 0; t < T; ++t)
            i0[t] = i1[t] = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
            const __m256i q0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u0.q + 32 * k));
            const __m256i q1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u1.q + 32 * k));
            const __m256i s0 =
                _mm256_set_m128i(_mm_set1_epi16(u0.sc[2 * k + 1]), _mm_set1_epi16(u0.sc[2 * k]));
            const __m256i s1 =
                _mm256_set_m128i(_mm_set1_epi16(u1.sc[2 * k + 1]), _mm_set1_epi16(u1.sc[2 * k]));
            if constexpr (Signed) {
                const __m256i a0 = _mm256_sign_epi8(q0, q0), a1 = _mm256_sign_epi8(q1, q1);
                for (int t = 0; t < T; ++t) {
                    const __m256i a =
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].qs + 32 * k));
                    i0[t] = _mm256_add_epi32(
                        i0[t], _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(a, q0)), s0));
                    i1[t] = _mm256_add_epi32(
                        i1[t], _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(a, q1)), s1));
                }
            } else {
                for (int t = 0; t < T; ++t) {
                    const __m256i a =
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].qs + 32 * k));
                    i0[t] = _mm256_add_epi32(i0[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q0, a), s0));
                    i1[t] = _mm256_add_epi32(i1[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q1, a), s1));
                }
            }
        }
        const __m256i so0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u0.so));
        const __m256i so1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u1.so));
        const __m256i mn0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u0.mn));
        const __m256i mn1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u1.mn));
        __m256i m0[T], m1[T];
        for (int t = 0; t < T; ++t) {
            const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].bsums));
            if constexpr (!Signed) {
                i0[t] = _mm256_sub_epi32(i0[t], _mm256_madd_epi16(so0, bs));
                i1[t] = _mm256_sub_epi32(i1[t], _mm256_madd_epi16(so1, bs));
            }
            if constexpr (Mins) {
                m0[t] = _mm256_madd_epi16(mn0, bs);
                m1[t] = _mm256_madd_epi16(mn1, bs);
            }
        }
        int32_t is0[T], is1[T], ms0[T] = {}, ms1[T] = {};
        hsumInts<T>(i0, is0);
        hsumInts<T>(i1, is1);
        if constexpr (Mins) {
            hsumInts<T>(m0, ms0);
            hsumInts<T>(m1, ms1);
        }
        for (int t = 0; t < T; ++t) {
            const float yd = y[t][b].d;
            sum0[t] += (yd * u0.d) * static_cast<float>(is0[t]) - (yd * u0.dmin) * static_cast<float>(ms0[t]);
            sum1[t] += (yd * u1.d) * static_cast<float>(is1[t]) - (yd * u1.dmin) * static_cast<float>(ms1[t]);
        }
    }
    for (int t = 0; t < T; ++t) {
        out0[t] = sum0[t];
        out1[t] = sum1[t];
    }
}

template <bool Signed, bool Mins>
void dotK2N(const UnpackedK* w0, const UnpackedK* w1, const BlockQ8_K* const* y, int nt, int64_t nb,
            float* out0, float* out1) {
    switch (nt) {
    case 1:
        dotK2T<1, Signed, Mins>(w0, w1, y, nb, out0, out1);
        break;
    case 2:
        dotK2T<2, Signed, Mins>(w0, w1, y, nb, out0, out1);
        break;
    case 3:
        dotK2T<3, Signed, Mins>(w0, w1, y, nb, out0, out1);
        break;
    default:
        dotK2T<4, Signed, Mins>(w0, w1, y, nb, out0, out1);
        break;
    }
}

template <bool Signed, bool Mins>
void dotKN(const UnpackedK* w, const BlockQ8_K* const* y, int nt, int64_t nb, float* out) {
    switch (nt) {
    case 1:
        dotKT<1, Signed, Mins>(w, y, nb, out);
        break;
    case 2:
        dotKT<2, Signed, Mins>(w, y, nb, out);
        break;
    case 3:
        dotKT<3, Signed, Mins>(w, y, nb, out);
        break;
    default:
        dotKT<4, Signed, Mins>(w, y, nb, out);
        break;
    }
}

// The 8 int32 lanes of v[0..T) summed, one integer per vector, in lanes 0..T-1 (the others 0).
template <int T> QZ_AVX2 inline __m128i hsum4(const __m256i* v) {
    const __m256i z = _mm256_setzero_si256();
    const __m256i h01 = _mm256_hadd_epi32(v[0], T > 1 ? v[1] : z);
    const __m256i h23 = _mm256_hadd_epi32(T > 2 ? v[2] : z, T > 3 ? v[3] : z);
    const __m256i h = _mm256_hadd_epi32(h01, h23);
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// The fp16 at byte offset off of the T activation blocks, as 4 float lanes (the others 0).
template <int T> QZ_AVX2 inline __m128 halves4(const uint8_t* const* y, size_t at) {
    uint16_t h[4] = {0, 0, 0, 0};
    for (int t = 0; t < T; ++t)
        std::memcpy(&h[t], y[t] + at, 2);
    return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h)));
}

// Per block and token: the exact integer sum of the 32 products, then the same float expression as
// dotB32Scalar (one integer per block; the tokens in the lanes of 128-bit vectors, each lane the scalar
// operations), so that every kernel gives the same bits.
template <int T>
QZ_AVX2 void dotB32T(const UnpackedB32* w, const uint8_t* const* y, int64_t nb, bool q81, float* out) {
    const size_t bs = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    const size_t qsOff = q81 ? 4 : 2;
    const __m256i ones = _mm256_set1_epi16(1);
    __m128 sum = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].q));
        const __m256i aq = _mm256_sign_epi8(q, q);
        __m256i s32[T];
        for (int t = 0; t < T; ++t) {
            const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t] + b * bs + qsOff));
            s32[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q)), ones);
        }
        const __m128 is = _mm_cvtepi32_ps(hsum4<T>(s32));
        const __m128 dy = halves4<T>(y, b * bs);
        sum = _mm_add_ps(sum, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(w[b].d), dy), is));
        if (q81) sum = _mm_add_ps(sum, _mm_mul_ps(_mm_set1_ps(w[b].m), halves4<T>(y, b * bs + 2)));
    }
    alignas(16) float tmp[4];
    _mm_store_ps(tmp, sum);
    for (int t = 0; t < T; ++t)
        out[t] = tmp[t];
}

// Two weight rows against T tokens, sharing the activation loads; per row the same operations as dotB32T.
template <int T>
QZ_AVX2 void dotB322T(const UnpackedB32* w0, const UnpackedB32* w1, const uint8_t* const* y, int64_t nb,
                      bool q81, float* out0, float* out1) {
    const size_t bs = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    const size_t qsOff = q81 ? 4 : 2;
    const __m256i ones = _mm256_set1_epi16(1);
    __m128 sum0 = _mm_setzero_ps(), sum1 = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0[b].q));
        const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1[b].q));
        const __m256i aq0 = _mm256_sign_epi8(q0, q0), aq1 = _mm256_sign_epi8(q1, q1);
        __m256i s0[T], s1[T];
        for (int t = 0; t < T; ++t) {
            const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t] + b * bs + qsOff));
            s0[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq0, _mm256_sign_epi8(a, q0)), ones);
            s1[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq1, _mm256_sign_epi8(a, q1)), ones);
        }
        const __m128 dy = halves4<T>(y, b * bs);
        sum0 = _mm_add_ps(sum0, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(w0[b].d), dy), _mm_cvtepi32_ps(hsum4<T>(s0))));
        sum1 = _mm_add_ps(sum1, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(w1[b].d), dy), _mm_cvtepi32_ps(hsum4<T>(s1))));
        if (q81) {
            const __m128 sy = halves4<T>(y, b * bs + 2);
            sum0 = _mm_add_ps(sum0, _mm_mul_ps(_mm_set1_ps(w0[b].m), sy));
            sum1 = _mm_add_ps(sum1, _mm_mul_ps(_mm_set1_ps(w1[b].m), sy));
        }
    }
    alignas(16) float t0[4], t1[4];
    _mm_store_ps(t0, sum0);
    _mm_store_ps(t1, sum1);
    for (int t = 0; t < T; ++t) {
        out0[t] = t0[t];
        out1[t] = t1[t];
    }
}

// Weights as stored: 0 = F32, 1 = F16, 2 = BF16 (converted exactly, 8 at a time).
template <int Kind> QZ_AVX2 inline __m256 loadWeights8(const void* w, int64_t i) {
    if constexpr (Kind == 0) {
        return _mm256_loadu_ps(static_cast<const float*>(w) + i);
    } else if constexpr (Kind == 1) {
        return _mm256_cvtph_ps(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
    } else {
        const __m128i h =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
}

template <int Kind> inline float weightAt(const void* w, int64_t i) {
    if constexpr (Kind == 0) {
        return static_cast<const float*>(w)[i];
    } else {
        const uint16_t h = static_cast<const uint16_t*>(w)[i];
        return Kind == 1 ? fp16ToFp32(h) : bf16ToFp32(h);
    }
}

template <int Kind, int T>
QZ_AVX2 void dotFloatT(const void* a, const float* const* b, int64_t n, float* out) {
    __m256 s0[T], s1[T];
    for (int t = 0; t < T; ++t)
        s0[t] = s1[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = loadWeights8<Kind>(a, i), w1 = loadWeights8<Kind>(a, i + 8);
        for (int t = 0; t < T; ++t) {
            s0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b[t] + i), s0[t]);
            s1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b[t] + i + 8), s1[t]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 w0 = loadWeights8<Kind>(a, i);
        for (int t = 0; t < T; ++t)
            s0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b[t] + i), s0[t]);
    }
    for (int t = 0; t < T; ++t) {
        float sum = hsum8(_mm256_add_ps(s0[t], s1[t]));
        for (int64_t k = i; k < n; ++k)
            sum += weightAt<Kind>(a, k) * b[t][k];
        out[t] = sum;
    }
}

template <int Kind> void dotFloatN(const void* a, const float* const* b, int nt, int64_t n, float* out) {
    switch (nt) {
    case 1:
        dotFloatT<Kind, 1>(a, b, n, out);
        break;
    case 2:
        dotFloatT<Kind, 2>(a, b, n, out);
        break;
    case 3:
        dotFloatT<Kind, 3>(a, b, n, out);
        break;
    default:
        dotFloatT<Kind, 4>(a, b, n, out);
        break;
    }
}

} // namespace

void dotK2Avx2(const UnpackedK* w0, const UnpackedK* w1, const BlockQ8_K* const* y, int nt, int64_t nb,
               float* out0, float* out1, bool signedValues, bool hasMins) {
    if (signedValues)
        dotK2N<true, false>(w0, w1, y, nt, nb, out0, out1);
    else if (hasMins)
        dotK2N<false, true>(w0, w1, y, nt, nb, out0, out1);
    else
        dotK2N<false, false>(w0, w1, y, nt, nb, out0, out1);
}

void dotKAvx2(const UnpackedK* w, const BlockQ8_K* const* y, int nt, int64_t nb, float* out,
              bool signedValues, bool hasMins) {
    if (signedValues)
        dotKN<true, false>(w, y, nt, nb, out);
    else if (hasMins)
        dotKN<false, true>(w, y, nt, nb, out);
    else
        dotKN<false, false>(w, y, nt, nb, out);
}

void dotB322Avx2(const UnpackedB32* w0, const UnpackedB32* w1, const uint8_t* const* y, int nt, int64_t nb,
                 bool q81, float* out0, float* out1) {
    switch (nt) {
    case 1:
        dotB322T<1>(w0, w1, y, nb, q81, out0, out1);
        break;
    case 2:
        dotB322T<2>(w0, w1, y, nb, q81, out0, out1);
        break;
    case 3:
        dotB322T<3>(w0, w1, y, nb, q81, out0, out1);
        break;
    default:
        dotB322T<4>(w0, w1, y, nb, q81, out0, out1);
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

void dotFloatAvx2(DType t, const void* a, const float* const* b, int nt, int64_t n, float* out) {
    if (t == DType::F16)
        dotFloatN<1>(a, b, nt, n, out);
    else if (t == DType::BF16)
        dotFloatN<2>(a, b, nt, n, out);
    else
        dotFloatN<0>(a, b, nt, n, out);
}

// ---- Unpacking of the quant bits (the scales are read by the portable code) ----

namespace {

QZ_AVX2 inline __m256i nibbles32(const uint8_t* qs16) { // [low nibbles of 16 bytes | high nibbles]
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs16));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
}

// 0xFF in byte j where bit j of x is set.
QZ_AVX2 inline __m256i bitsToBytes(uint32_t x) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x)), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi8(-1));
}

// Bits shift, shift + 1 of every byte, moved to bits 4-5.
QZ_AVX2 inline __m256i q6High(__m256i qh, int shift) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), _mm256_set1_epi8(3)), 4);
}

// TQ1_0's trit (0..2) of each byte b held in a 16-bit lane, for p = 3^n: (uint8)(b·p)·3 >> 8.
QZ_AVX2 inline __m256i tq1Trits(__m256i w, __m256i p) {
    const __m256i qv = _mm256_and_si256(_mm256_mullo_epi16(w, p), _mm256_set1_epi16(0xFF));
    return _mm256_srli_epi16(_mm256_mullo_epi16(qv, _mm256_set1_epi16(3)), 8);
}

QZ_AVX2 inline void store32(int8_t* q, __m256i v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), v);
}

QZ_AVX2 inline __m256i load32(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

QZ_AVX2 inline __m256i lookup16(__m256i idx, const int8_t* table) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(table));
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), idx);
}

} // namespace

QZ_AVX2 __attribute__((always_inline)) inline void quantsImpl(DType t, const uint8_t* b, int8_t* q) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    switch (t) {
    case DType::Q4_0:
        store32(q, _mm256_sub_epi8(nibbles32(b + 2), _mm256_set1_epi8(8)));
        break;
    case DType::Q4_1:
        store32(q, nibbles32(b + 4));
        break;
    case DType::Q8_0:
        store32(q, load32(b + 2));
        break;
    case DType::IQ4_NL:
        store32(q, lookup16(nibbles32(b + 2), kValuesIQ4NL));
        break;
    case DType::MXFP4:
        store32(q, lookup16(nibbles32(b + 1), kValuesMXFP4));
        break;
    case DType::Q5_0:
    case DType::Q5_1: {
        const bool one = t == DType::Q5_1;
        uint32_t qh;
        std::memcpy(&qh, b + (one ? 4 : 2), 4);
        __m256i v = _mm256_or_si256(nibbles32(b + (one ? 8 : 6)),
                                    _mm256_and_si256(bitsToBytes(qh), _mm256_set1_epi8(16)));
        if (!one) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
        store32(q, v);
        break;
    }
    case DType::Q4_K: {
        const uint8_t* qs = b + 16;
        for (int c = 0; c < 4; ++c) {
            const __m256i x = load32(qs + 32 * c);
            store32(q + 64 * c, _mm256_and_si256(x, m4));
            store32(q + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(x, 4), m4));
        }
        break;
    }
    case DType::Q5_K: {
        const __m256i qh = load32(b + 16);
        const uint8_t* qs = b + 48;
        for (int c = 0; c < 4; ++c) {
            const __m256i x = load32(qs + 32 * c);
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m1), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), m1), 4);
            store32(q + 64 * c, _mm256_or_si256(_mm256_and_si256(x, m4), h0));
            store32(q + 64 * c + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(x, 4), m4), h1));
        }
        break;
    }
    case DType::Q6_K: {
        const __m256i m32 = _mm256_set1_epi8(32);
        for (int h = 0; h < 2; ++h) {
            const __m256i l0 = load32(b + 64 * h), l1 = load32(b + 64 * h + 32),
                          qh = load32(b + 128 + 32 * h);
            int8_t* y = q + 128 * h;
            store32(y, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l0, m4), q6High(qh, 0)), m32));
            store32(y + 32, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l1, m4), q6High(qh, 2)), m32));
            store32(y + 64,
                    _mm256_sub_epi8(
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), q6High(qh, 4)), m32));
            store32(y + 96,
                    _mm256_sub_epi8(
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), q6High(qh, 6)), m32));
        }
        break;
    }
    case DType::Q2_K:
    case DType::Q3_K: {
        const bool three = t == DType::Q3_K;
        const uint8_t* qs = b + (three ? 32 : 16);
        const __m256i hm = three ? load32(b) : _mm256_setzero_si256();
        int bit = 0;
        for (int half = 0; half < 2; ++half) {
            const __m256i x = load32(qs + 32 * half);
            for (int shift = 0; shift < 8; shift += 2, ++bit) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(x, shift), m2);
                if (three) { // minus 4 where the hmask bit is clear
                    const __m256i set = _mm256_and_si256(hm, _mm256_set1_epi8(static_cast<char>(1 << bit)));
                    const __m256i clear = _mm256_cmpeq_epi8(set, _mm256_setzero_si256());
                    v = _mm256_sub_epi8(v, _mm256_and_si256(clear, _mm256_set1_epi8(4)));
                }
                store32(q + 32 * bit, v);
            }
        }
        break;
    }
    case DType::TQ1_0: { // trit n of byte b: ((uint8)(b·3^n)·3 >> 8) - 1 (README.md B.3)
        static constexpr int16_t pow3[5] = {1, 3, 9, 27, 81};
        const __m256i x = load32(b);
        const __m128i xs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 32));
        const __m256i lo = _mm256_unpacklo_epi8(x, _mm256_setzero_si256());
        const __m256i hi = _mm256_unpackhi_epi8(x, _mm256_setzero_si256());
        const __m256i x2 = _mm256_cvtepu8_epi16(xs); // the 16 bytes at 32, widened in order
        for (int n = 0; n < 5; ++n) {
            const __m256i p = _mm256_set1_epi16(pow3[n]);
            store32(q + 32 * n, _mm256_sub_epi8(_mm256_packus_epi16(tq1Trits(lo, p), tq1Trits(hi, p)), m1));
            const __m256i t2 = tq1Trits(x2, p);
            const __m128i packed =
                _mm_packus_epi16(_mm256_castsi256_si128(t2), _mm256_extracti128_si256(t2, 1));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 160 + 16 * n),
                             _mm_sub_epi8(packed, _mm_set1_epi8(1)));
        }
        for (int n = 0; n < 4; ++n)
            for (int j = 0; j < 4; ++j) {
                const int qv = static_cast<uint8_t>(b[48 + j] * pow3[n]);
                q[240 + 4 * n + j] = static_cast<int8_t>(((qv * 3) >> 8) - 1);
            }
        break;
    }
    case DType::IQ1_S:
    case DType::IQ1_M: { // 8·g ± 1 from the grid rows (vec_dot_unpack.cpp)
        const bool m = t == DType::IQ1_M;
        const uint8_t* qs = m ? b : b + 2;
        for (int ib = 0; ib < 8; ++ib) {
            int64_t g[4], dl[4];
            for (int l = 0; l < 4; ++l) {
                int hi;
                bool neg;
                if (m) {
                    const uint8_t h = b[32 + 2 * ib + l / 2];
                    hi = l % 2 ? (h >> 4) & 7 : h & 7;
                    neg = l % 2 ? (h & 0x80) : (h & 0x08);
                } else {
                    uint16_t qh;
                    std::memcpy(&qh, b + 34 + 2 * ib, 2);
                    hi = (qh >> (3 * l)) & 7;
                    neg = qh & 0x8000;
                }
                std::memcpy(&g[l], iqgrid::kIQ1S[qs[4 * ib + l] | (hi << 8)], 8);
                dl[l] = neg ? -1 : 0x0101010101010101ll;
            }
            __m256i v = _mm256_set_epi64x(g[3], g[2], g[1], g[0]);
            v = _mm256_add_epi8(v, v);
            v = _mm256_add_epi8(v, v);
            v = _mm256_add_epi8(v, v);
            store32(q + 32 * ib, _mm256_add_epi8(v, _mm256_set_epi64x(dl[3], dl[2], dl[1], dl[0])));
        }
        break;
    }
    case DType::TQ2_0: { // element 128·(j/32) + 32·l + m is ((qs[j + m] >> 2l) & 3) - 1
        for (int j = 0; j < 2; ++j) {
            const __m256i x = load32(b + 32 * j);
            for (int l = 0; l < 4; ++l)
                store32(q + 128 * j + 32 * l,
                        _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(x, 2 * l), m2), m1));
        }
        break;
    }
    case DType::IQ4_XS: {
        const uint8_t* qs = b + 8;
        for (int ib = 0; ib < 8; ++ib)
            store32(q + 32 * ib, lookup16(nibbles32(qs + 16 * ib), kValuesIQ4NL));
        break;
    }
    default:
        break;
    }
}

QZ_AVX2 void unpackQuantsAvx2(DType t, const uint8_t* b, int8_t* q) {
    quantsImpl(t, b, q);
}

template <DType T> QZ_AVX2 void unpackB32Loop(const uint8_t* src, UnpackedB32* dst, int64_t nb) {
    constexpr size_t bs = T == DType::Q4_0 || T == DType::IQ4_NL ? sizeof(BlockQ4_0)
                          : T == DType::Q4_1                     ? sizeof(BlockQ4_1)
                          : T == DType::Q5_0                     ? sizeof(BlockQ5_0)
                          : T == DType::Q5_1                     ? sizeof(BlockQ5_1)
                          : T == DType::Q8_0                     ? sizeof(BlockQ8_0)
                                                                 : sizeof(BlockMXFP4);
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = src + i * bs;
        UnpackedB32& u = dst[i];
        uint16_t h;
        if constexpr (T == DType::MXFP4) { // 2^(e-128) (ggml's GGML_E8M0_TO_FP32_HALF)
            const uint32_t bits = b[0] < 2 ? (0x00200000u << b[0]) : (static_cast<uint32_t>(b[0] - 1) << 23);
            std::memcpy(&u.d, &bits, 4);
        } else {
            std::memcpy(&h, b, 2);
            u.d = _cvtsh_ss(h);
        }
        u.m = 0.f;
        if constexpr (T == DType::Q4_1 || T == DType::Q5_1) {
            std::memcpy(&h, b + 2, 2);
            u.m = _cvtsh_ss(h);
        }
        quantsImpl(T, b, u.q);
    }
}

void unpackB32Avx2(DType t, const uint8_t* src, UnpackedB32* dst, int64_t nb) {
    switch (t) {
    case DType::Q4_0:
        unpackB32Loop<DType::Q4_0>(src, dst, nb);
        break;
    case DType::Q4_1:
        unpackB32Loop<DType::Q4_1>(src, dst, nb);
        break;
    case DType::Q5_0:
        unpackB32Loop<DType::Q5_0>(src, dst, nb);
        break;
    case DType::Q5_1:
        unpackB32Loop<DType::Q5_1>(src, dst, nb);
        break;
    case DType::Q8_0:
        unpackB32Loop<DType::Q8_0>(src, dst, nb);
        break;
    case DType::IQ4_NL:
        unpackB32Loop<DType::IQ4_NL>(src, dst, nb);
        break;
    case DType::MXFP4:
        unpackB32Loop<DType::MXFP4>(src, dst, nb);
        break;
    default:
        break;
    }
}

bool hasQuantsAvx2(DType t) {
    switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::IQ4_NL:
    case DType::MXFP4:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ4_XS:
    case DType::TQ2_0:
    case DType::TQ1_0:
    case DType::IQ1_S:
    case DType::IQ1_M:
        return true;
    default:
        return false;
    }
}

// ggml-cpu's AVX Q8_0 encoder (vec_dot.cpp encodeQ8Avx, the same operations 8 lanes at a time): the lanes'
// maxima skip NaN as the scalar loop does and the others are order-free, so the bytes are the same.
QZ_AVX2 void encodeQ8_0Avx2(const float* x, uint8_t* dst, int64_t nb) {
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < nb; ++i, x += 32, dst += sizeof(BlockQ8_0)) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < 4; ++k) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            mx = _mm256_max_ps(_mm256_andnot_ps(signBit, v[k]), mx);
        }
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float maxAbs = _mm_cvtss_f32(m4);
        const uint16_t dh = fp32ToFp16(maxAbs / 127.f);
        std::memcpy(dst, &dh, 2);
        const __m256 id = _mm256_set1_ps(maxAbs != 0.0f ? 127.f / maxAbs : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; ++k)
            q[k] = _mm256_cvtps_epi32(
                _mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2), _mm256_permutevar8x32_epi32(p, order));
    }
}

// quantize_row_q8_K_ref (vec_dot.cpp encodeQ8K) 8 lanes at a time: the largest |x| (NaN skipped), the first
// x with that magnitude, nearest_int's 1.5·2^23 trick in integers, the low byte of min(127, v).
QZ_AVX2 void encodeQ8KAvx2(const float* x, BlockQ8_K* y, int64_t nb) {
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i mant = _mm256_set1_epi32(0x007fffff), half = _mm256_set1_epi32(0x00400000);
    const __m256i lowByte = _mm256_set1_epi32(0xFF), top = _mm256_set1_epi32(127);
    const __m256 magic = _mm256_set1_ps(12582912.f);
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < 32; ++k)
            mx = _mm256_max_ps(_mm256_andnot_ps(signBit, _mm256_loadu_ps(x + 8 * k)), mx);
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0.f) {
            std::memset(&y[i], 0, sizeof(BlockQ8_K));
            continue;
        }
        float max = 0.f;
        const __m256 am = _mm256_set1_ps(amax);
        for (int k = 0; k < 32; ++k) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(signBit, _mm256_loadu_ps(x + 8 * k)), am, _CMP_EQ_OQ));
            if (mask) {
                max = x[8 * k + __builtin_ctz(static_cast<unsigned>(mask))];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int k = 0; k < 8; ++k) {
            __m256i q[4];
            for (int l = 0; l < 4; ++l) {
                const __m256 t = _mm256_add_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + 32 * k + 8 * l)), magic);
                const __m256i v = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), mant), half);
                q[l] = _mm256_and_si256(_mm256_min_epi32(v, top), lowByte);
            }
            const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + 32 * k), _mm256_permutevar8x32_epi32(p, order));
        }
        const __m256i ones = _mm256_set1_epi16(1);
        for (int j = 0; j < QK_K / 16; j += 2) {
            const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs + 16 * j)));
            const __m256i w1 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs + 16 * j + 16)));
            __m256i s0 = _mm256_madd_epi16(w0, ones), s1 = _mm256_madd_epi16(w1, ones);
            const __m256i h = _mm256_hadd_epi32(s0, s1); // [s0 pairs lo, s1 pairs lo, s0 hi, s1 hi]
            const __m128i h2 = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            const __m128i h3 = _mm_hadd_epi32(h2, h2);
            y[i].bsums[j] = static_cast<int16_t>(_mm_cvtsi128_si32(h3));
            y[i].bsums[j + 1] = static_cast<int16_t>(_mm_extract_epi32(h3, 1));
        }
        y[i].d = 1 / iscale;
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
void dotKAvx2(const UnpackedK*, const BlockQ8_K* const*, int, int64_t, float*, bool, bool) {}
void dotK2Avx2(const UnpackedK*, const UnpackedK*, const BlockQ8_K* const*, int, int64_t, float*, float*,
               bool, bool) {}
void dotB322Avx2(const UnpackedB32*, const UnpackedB32*, const uint8_t* const*, int, int64_t, bool, float*,
                 float*) {}
void dotB32Avx2(const UnpackedB32* w, const uint8_t* const* y, int nt, int64_t nb, bool q81, float* out) {
    for (int t = 0; t < nt; ++t)
        out[t] = dotB32Scalar(w, y[t], nb, q81);
}
void dotFloatAvx2(DType, const void*, const float* const*, int, int64_t, float*) {}
void decodeF16Avx2(const uint16_t*, float*, int64_t) {}
void encodeQ8_0Avx2(const float*, uint8_t*, int64_t) {}
void encodeQ8KAvx2(const float*, BlockQ8_K*, int64_t) {}
void unpackQuantsAvx2(DType, const uint8_t*, int8_t*) {}
bool hasQuantsAvx2(DType) {
    return false;
}

#endif

} // namespace qz::ggml::vecdot

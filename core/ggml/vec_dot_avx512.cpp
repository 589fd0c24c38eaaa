// AVX-512 kernel for quantizedLinear's float weight types (F32 / F16 / BF16 stored, activations decoded
// to floats): 4 weight rows × up to 4 tokens, every (row, token) pair with its own 16-lane accumulator.
// Lane l of one 512-bit accumulator holds exactly what lane l of the AVX2 kernel's two 256-bit
// accumulators holds (element i + l of every 16, fused multiply-adds in the same order; the tail of 8
// only in lanes 0..7), and the reduction is the AVX2 kernel's (the two halves added, then hsum8, then the
// scalar tail), so the results are dotFloatAvx2's bits; the 4 rows share the activation loads, which
// otherwise bound the kernel. Called only after haveAvx512() checked the CPU and the OS at run time.
#include <cstdlib>

#include "common/dtype.h"
#include "common/fp16.h"
#include "ggml/vec_dot_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define QZ_VECDOT_AVX512 1
#else
#define QZ_VECDOT_AVX512 0
#endif

namespace qz::ggml::vecdot {

#if QZ_VECDOT_AVX512

namespace {

#if defined(__GNUC__) && !defined(__clang__) // the intrinsics' deliberate _mm512_undefined_* operands
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define QZ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

bool detect() {
    if (const char* env = std::getenv("QZ_NO_AVX512"); env && *env && *env != '0') return false;
    if (!haveAvx2()) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; // OSXSAVE
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    // AVX512F (bit 16), DQ (17), BW (30), VL (31)
    if (!((b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31)))) return false;
    unsigned lo = 0, hi = 0;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xE6u) == 0xE6u; // XMM, YMM, opmask, ZMM upper halves, ZMM16-31 enabled by the OS
}

// As vec_dot_avx2.cpp's hsum8.
QZ_AVX512 inline float hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// 16 weights from element i (Kind 0 = F32, 1 = F16, 2 = BF16), converted exactly.
template <int Kind> QZ_AVX512 inline __m512 load16(const void* w, int64_t i) {
    if constexpr (Kind == 0) {
        return _mm512_loadu_ps(static_cast<const float*>(w) + i);
    } else {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
        if constexpr (Kind == 1) return _mm512_cvtph_ps(h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
}

// 8 weights from element i in lanes 0..7 (lanes 8..15 zero), nothing read past them.
template <int Kind> QZ_AVX512 inline __m512 load8(const void* w, int64_t i) {
    if constexpr (Kind == 0) {
        return _mm512_maskz_loadu_ps(0xFF, static_cast<const float*>(w) + i);
    } else {
        const __m256i h = _mm256_zextsi128_si256(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
        if constexpr (Kind == 1) return _mm512_cvtph_ps(h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
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
QZ_AVX512 void dotFloat4T(const void* const* w, const float* const* b, int64_t n, float* out) {
    constexpr int R = 4;
    __m512 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t)
            acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wv[R];
        for (int r = 0; r < R; ++r)
            wv[r] = load16<Kind>(w[r], i);
        for (int t = 0; t < T; ++t) {
            const __m512 a = _mm512_loadu_ps(b[t] + i);
            for (int r = 0; r < R; ++r)
                acc[r][t] = _mm512_fmadd_ps(wv[r], a, acc[r][t]);
        }
    }
    if (i + 8 <= n) { // the AVX2 kernel's loop of 8, into its first accumulator only
        __m512 wv[R];
        for (int r = 0; r < R; ++r)
            wv[r] = load8<Kind>(w[r], i);
        for (int t = 0; t < T; ++t) {
            const __m512 a = _mm512_maskz_loadu_ps(0xFF, b[t] + i);
            for (int r = 0; r < R; ++r)
                acc[r][t] = _mm512_mask3_fmadd_ps(wv[r], a, acc[r][t], 0xFF);
        }
        i += 8;
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) {
            float sum = hsum8(_mm256_add_ps(_mm512_castps512_ps256(acc[r][t]), _mm512_extractf32x8_ps(acc[r][t], 1)));
            for (int64_t k = i; k < n; ++k)
                sum += weightAt<Kind>(w[r], k) * b[t][k];
            out[r * kMaxTokens + t] = sum;
        }
}

template <int Kind> void dotFloat4N(const void* const* w, const float* const* b, int nt, int64_t n, float* out) {
    switch (nt) {
    case 1:
        dotFloat4T<Kind, 1>(w, b, n, out);
        break;
    case 2:
        dotFloat4T<Kind, 2>(w, b, n, out);
        break;
    case 3:
        dotFloat4T<Kind, 3>(w, b, n, out);
        break;
    default:
        dotFloat4T<Kind, 4>(w, b, n, out);
        break;
    }
}

} // namespace

bool haveAvx512() {
    static const bool yes = detect();
    return yes;
}

void dotFloat4Avx512(DType t, const void* const* w, const float* const* b, int nt, int64_t n, float* out) {
    if (t == DType::F16)
        dotFloat4N<1>(w, b, nt, n, out);
    else if (t == DType::BF16)
        dotFloat4N<2>(w, b, nt, n, out);
    else
        dotFloat4N<0>(w, b, nt, n, out);
}

#else

bool haveAvx512() {
    return false;
}
void dotFloat4Avx512(DType, const void* const*, const float* const*, int, int64_t, float*) {}

#endif

} // namespace qz::ggml::vecdot

// IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S block quantizers, byte-identical to ggml's quantize_iq2_* /
// quantize_iq3_*; algorithms and facts: core/ggml/README-iquants.md. Every float expression keeps ggml's
// operand order (the project builds with -ffp-contract=off).
#include "common/fp16.h"
#include "ggml/iquants.h"
#include "ggml/iquants_shared.h"

namespace qz::ggml {

namespace {

using namespace iq;

// Even-parity sign folding of 8 values (README-iquants.md "Signs"): xval = |x|, except that with an
// odd number of negatives the element with the smallest w*x^2 keeps its sign. Returns the 7-bit index.
uint8_t foldSigns8(const float* xb, const float* weight, float* xval) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            ++nflip;
            s = static_cast<uint8_t>(s | (1 << i));
        }
    }
    if (nflip % 2) {
        int imin = 0;
        float mn = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; ++i) {
            const float ax = weight[i] * xb[i] * xb[i];
            if (ax < mn) {
                mn = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s = static_cast<uint8_t>(s ^ (1 << imin));
    }
    return static_cast<uint8_t>(s & 127);
}

// The prologue of the even-sign-parity types (IQ2_XXS, IQ2_XS, IQ3_XXS) for one group of n weights (a
// multiple of 8): waux = √weight, |x| with the signs folded per 8 (foldSigns8), and the largest |x|.
float foldGroup(const float* xb, const float* weight, int n, float* waux, float* xval, uint8_t* signs) {
    sqrtAll(weight, n, waux);
    for (int k = 0; k < n / 8; ++k)
        signs[k] = foldSigns8(xb + 8 * k, weight + 8 * k, xval + 8 * k);
    float max = xval[0];
    for (int i = 1; i < n; ++i)
        max = std::max(max, xval[i]);
    return max;
}

// Plain signs (IQ2_S, IQ3_S): all 8 bits stored.
uint8_t plainSigns8(const float* xb, float* xval) {
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            s = static_cast<uint8_t>(s | (1 << i));
        }
    }
    return s;
}
// Fields at inverse scale id: L[i] = clamp(nearest_int(0.5f*(id*xval[i] - 1)), 0, kMaxQ-1), n a multiple
// of 8.
inline void fieldsPortable(int n, int kMaxQ, float id, const float* xval, int8_t* L) {
    for (int i = 0; i < n; ++i)
        L[i] = static_cast<int8_t>(clampi(nearest_int(0.5f * (id * xval[i] - 1)), 0, kMaxQ - 1));
}

// fitScale's products: wxq[i] = w*xval*q, wqq[i] = w*q*q, q = 2L+1 (ggml's operand order).
inline void fitProductsPortable(int n, const float* weight, const float* xval, const int8_t* L, float* wxq,
                                float* wqq) {
    for (int i = 0; i < n; ++i) {
        const float w = weight[i];
        const float q = 2 * L[i] + 1;
        wxq[i] = w * xval[i] * q;
        wqq[i] = w * q * q;
    }
}

#if defined(__x86_64__) || defined(__i386__)
// The same per-lane operations, 8 values at a time (nearest_int's 1.5*2^23 trick on the float bits).
__attribute__((target("avx2"))) inline void fieldsAvx2(int n, int kMaxQ, float id, const float* xval,
                                                       int8_t* L) {
    const __m256 vid = _mm256_set1_ps(id), one = _mm256_set1_ps(1.f), half = _mm256_set1_ps(0.5f),
                 magic = _mm256_set1_ps(12582912.f);
    const __m256i mant = _mm256_set1_epi32(0x007fffff), off = _mm256_set1_epi32(0x00400000),
                  hi = _mm256_set1_epi32(kMaxQ - 1), lo = _mm256_setzero_si256();
    for (int c = 0; c < n; c += 8) {
        const __m256 v =
            _mm256_mul_ps(half, _mm256_sub_ps(_mm256_mul_ps(vid, _mm256_loadu_ps(xval + c)), one));
        __m256i l =
            _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(_mm256_add_ps(v, magic)), mant), off);
        l = _mm256_min_epi32(_mm256_max_epi32(l, lo), hi);
        const __m128i l16 = _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(L + c), _mm_packs_epi16(l16, l16));
    }
}

__attribute__((target("avx2"))) inline void fitProductsAvx2(int n, const float* weight, const float* xval,
                                                            const int8_t* L, float* wxq, float* wqq) {
    const __m256i one = _mm256_set1_epi32(1);
    for (int c = 0; c < n; c += 8) {
        const __m256i l = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(L + c)));
        const __m256 q = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_add_epi32(l, l), one));
        const __m256 w = _mm256_loadu_ps(weight + c);
        _mm256_storeu_ps(wxq + c, _mm256_mul_ps(_mm256_mul_ps(w, _mm256_loadu_ps(xval + c)), q));
        _mm256_storeu_ps(wqq + c, _mm256_mul_ps(_mm256_mul_ps(w, q), q));
    }
}
#endif

// The helpers below come in two instantiations: Avx2 = true is only inlined into functions compiled for
// AVX2 (gridSearchAvx2), where the AVX2 kernels are called directly and can be inlined; Avx2 = false
// dispatches at run time.
template <bool Avx2>
__attribute__((always_inline)) inline void fieldsT(int n, int kMaxQ, float id, const float* xval, int8_t* L) {
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Avx2) {
        fieldsAvx2(n, kMaxQ, id, xval, L);
    } else {
        static const bool avx2 = detectAvx2();
        if (avx2)
            fieldsAvx2(n, kMaxQ, id, xval, L);
        else
            fieldsPortable(n, kMaxQ, id, xval, L);
    }
#else
    fieldsPortable(n, kMaxQ, id, xval, L);
#endif
}

// Snap the n values (groups of lat.dim) at inverse scale id: fields, then the map; off-grid groups go to
// the best neighbour at `scale`. onGrid[k] (optional) tells whether group k was on the grid.
template <bool Avx2>
__attribute__((always_inline)) inline void snapAllT(const Lattice& lat, int n, int kMaxQ, float id,
                                                    float scale, const float* xval, const float* waux,
                                                    int8_t* L, bool* onGrid) {
    fieldsT<Avx2>(n, kMaxQ, id, xval, L);
    for (int k = 0; k < n / lat.dim; ++k) {
        int8_t* Lk = L + lat.dim * k;
        const int gi = lat.map[packFields(Lk, lat.dim, lat.bits)];
        if (onGrid) onGrid[k] = gi >= 0;
        if (gi < 0)
            findBestNeighbourT<Avx2>(lat, neighboursOf(lat, gi), xval + lat.dim * k, waux + lat.dim * k,
                                     scale, Lk);
    }
}
inline void snapAll(const Lattice& lat, int n, int kMaxQ, float id, float scale, const float* xval,
                    const float* waux, int8_t* L, bool* onGrid) {
    snapAllT<false>(lat, n, kMaxQ, id, scale, xval, waux, L, onGrid);
}

// Snap one group (dim values); returns whether it was on the grid.
template <bool Avx2>
__attribute__((always_inline)) inline bool snapGroupT(const Lattice& lat, int kMaxQ, float id, float scale,
                                                      const float* xval, const float* waux, int8_t* L) {
    fieldsPortable(lat.dim, kMaxQ, id, xval, L);
    const int gi = lat.map[packFields(L, lat.dim, lat.bits)];
    if (gi >= 0) return true;
    findBestNeighbourT<Avx2>(lat, neighboursOf(lat, gi), xval, waux, scale, L);
    return false;
}

// sumqx = sum w*xval*q, sumq2 = sum w*q*q in ggml's order (products side by side, the sums sequential).
template <bool Avx2>
__attribute__((always_inline)) inline void fitScaleT(int n, const float* weight, const float* xval,
                                                     const int8_t* L, float& sumqx, float& sumq2) {
    alignas(32) float wxq[32], wqq[32];
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Avx2) {
        fitProductsAvx2(n, weight, xval, L, wxq, wqq);
    } else {
        static const bool avx2 = detectAvx2();
        if (avx2)
            fitProductsAvx2(n, weight, xval, L, wxq, wqq);
        else
            fitProductsPortable(n, weight, xval, L, wxq, wqq);
    }
#else
    fitProductsPortable(n, weight, xval, L, wxq, wqq);
#endif
    sumqx = 0;
    sumq2 = 0;
    for (int i = 0; i < n; ++i) {
        sumqx += wxq[i];
        sumq2 += wqq[i];
    }
}
inline void fitScale(int n, const float* weight, const float* xval, const int8_t* L, float& sumqx,
                     float& sumq2) {
    fitScaleT<false>(n, weight, xval, L, sumqx, sumq2);
}

// The grid search shared by IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S (README-iquants.md "Scale search"):
// n values in groups of lat.dim, trial inverse scales (base + is*step)/max for is in [-nis, nis];
// afterwards the off-grid groups (all groups when reSnapAll) are snapped again at the best scale and
// the scale refit. Returns the scale (may be negative only in theory); L gets the fields.
template <bool Avx2>
__attribute__((always_inline)) inline float
gridSearchT(const Lattice& lat, int n, int kMaxQ, int nis, float step, bool reSnapAll, float max,
            const float* weight, const float* waux, const float* xval, int8_t* L) {
    int8_t Laux[32];
    bool onGrid[8], onGridAux[8];
    const int ng = n / lat.dim;
    float best = 0;
    float scale = max / (2 * kMaxQ - 1);
    for (int k = 0; k < ng; ++k)
        onGrid[k] = !reSnapAll;
    for (int is = -nis; is <= nis; ++is) {
        const float id = (2 * kMaxQ - 1 + is * step) / max;
        const float thisScale = 1 / id;
        snapAllT<Avx2>(lat, n, kMaxQ, id, thisScale, xval, waux, Laux, onGridAux);
        float sumqx, sumq2;
        fitScaleT<Avx2>(n, weight, xval, Laux, sumqx, sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            std::memcpy(L, Laux, n);
            for (int k = 0; k < ng; ++k)
                onGrid[k] = onGridAux[k];
        }
    }
    int notOnGrid = 0;
    for (int k = 0; k < ng; ++k)
        if (!onGrid[k]) ++notOnGrid;
    if (notOnGrid > 0 && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < ng; ++k) {
            if (!reSnapAll && onGrid[k]) continue;
            int8_t* Lk = L + lat.dim * k;
            snapGroupT<Avx2>(lat, kMaxQ, id, scale, xval + lat.dim * k, waux + lat.dim * k, Lk);
        }
        float sumqx, sumq2;
        fitScaleT<Avx2>(n, weight, xval, L, sumqx, sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale;
}

float gridSearchPortable(const Lattice& lat, int n, int kMaxQ, int nis, float step, bool reSnapAll, float max,
                         const float* weight, const float* waux, const float* xval, int8_t* L) {
    return gridSearchT<false>(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) float gridSearchAvx2(const Lattice& lat, int n, int kMaxQ, int nis,
                                                     float step, bool reSnapAll, float max,
                                                     const float* weight, const float* waux,
                                                     const float* xval, int8_t* L) {
    return gridSearchT<true>(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
}
#endif
float gridSearch(const Lattice& lat, int n, int kMaxQ, int nis, float step, bool reSnapAll, float max,
                 const float* weight, const float* waux, const float* xval, int8_t* L) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return gridSearchAvx2(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
#endif
    return gridSearchPortable(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
}

int gridIndexOf(const Lattice& lat, const int8_t* L) {
    const int gi = lat.map[packFields(L, lat.dim, lat.bits)];
    return gi >= 0 ? gi : 0; // always on the grid here (ggml aborts otherwise)
}

// -------------------------------------------------------------------------------------------- IQ2_XXS
// layout: d @0, qs u16[32] @2 (per 32: u32 grid bytes, u32 signs | scale << 28)
void iq2xxsBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ2XXS();
    constexpr int kMaxQ = 3;
    float scales[QK / 32], weight[32], xval[32], waux[32];
    int8_t L[32], Laux[32];
    uint8_t signs[4];
    uint32_t q2[16] = {};
    float maxScale = 0;
    const float sigma2 = sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 32 * ib, sigma2, 32, weight);
        } else {
            for (int i = 0; i < 32; ++i)
                weight[i] = 1.f * std::sqrt(sigma2 + xb[i] * xb[i]);
        }
        const float max = foldGroup(xb, weight, 32, waux, xval, signs);
        if (max < kGroupMaxEps) {
            scales[ib] = 0;
            continue;
        }
        float scale = make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
        const float effMax = scale * kMaxQ;
        if (effMax <= 0) {
            scales[ib] = 0;
            continue;
        }
        float best = 0;
        for (int is = -6; is <= 6; ++is) {
            const float id = (2 * kMaxQ - 1 + is * 0.1f) / effMax;
            const float thisScale = 1 / id;
            snapAll(lat, 32, kMaxQ, id, thisScale, xval, waux, Laux, nullptr);
            float sumqx, sumq2;
            fitScale(32, weight, xval, Laux, sumqx, sumq2);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                std::memcpy(L, Laux, 32);
            }
        }
        if (scale > 0) {
            const float id = 1 / scale;
            snapAll(lat, 32, kMaxQ, id, scale, xval, waux, L, nullptr);
            float sumqx, sumq2;
            fitScale(32, weight, xval, L, sumqx, sumq2);
            if (sumq2 > 0) scale = sumqx / sumq2;
        }
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k] & 127);
        }
        for (int k = 0; k < 4; ++k) {
            q2[2 * ib] |= static_cast<uint32_t>(gridIndexOf(lat, L + 8 * k)) << (8 * k);
            q2[2 * ib + 1] |= static_cast<uint32_t>(signs[k]) << (7 * k);
        }
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    std::memset(y, 0, 66);
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        q2[2 * ib + 1] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y + 2, q2, 64);
}

// --------------------------------------------------------------------------------------------- IQ2_XS
// layout: d @0, qs u16[32] @2 (9-bit grid index | 7-bit signs << 9), scales[8] @66
void iq2xsBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ2XS();
    constexpr int kMaxQ = 3;
    float scales[QK / 16], weight[16], xval[16], waux[16];
    int8_t L[16];
    uint8_t signs[2];
    uint16_t q2[32] = {};
    float maxScale = 0;
    const float sigma2 = sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float* xb = xbl + 16 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 16 * ib, sigma2, 16, weight);
        } else {
            for (int i = 0; i < 16; ++i)
                weight[i] = 1.f * std::sqrt(sigma2 + xb[i] * xb[i]);
        }
        const float max = foldGroup(xb, weight, 16, waux, xval, signs);
        std::memset(L, 0, 16);
        if (max < kGroupMaxEps) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 16, kMaxQ, 9, 0.1f, false, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k] & 127);
        }
        for (int k = 0; k < 2; ++k)
            q2[2 * ib + k] = static_cast<uint16_t>(gridIndexOf(lat, L + 8 * k) | (signs[k] << 9));
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    std::memset(y, 0, 74);
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        y[66 + ib / 2] = static_cast<uint8_t>(y[66 + ib / 2] | (l << (4 * (ib % 2))));
    }
    std::memcpy(y + 2, q2, 64);
}

// ---------------------------------------------------------------------------------------------- IQ2_S
// layout: d @0, qs[32] low index bytes @2, signs[32] @34, qh[8] @66 (2 bits per 8), scales[8] @74
void iq2sBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ2S();
    constexpr int kMaxQ = 3;
    float scales[QK / 16], weight[16], xval[16], waux[16];
    int8_t L[16];
    uint8_t signs[2];
    std::memset(y, 0, 82);
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float* xb = xbl + 16 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 16 * ib, sigma2, 16, weight);
        } else {
            for (int i = 0; i < 16; ++i)
                weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
        }
        sqrtAll(weight, 16, waux);
        for (int k = 0; k < 2; ++k)
            signs[k] = plainSigns8(xb + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 16; ++i)
            max = std::max(max, xval[i]);
        std::memset(L, 0, 16);
        if (max < 1e-8f) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 16, kMaxQ, 9, 0.1f, false, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k]);
        }
        for (int k = 0; k < 2; ++k) {
            const int gi = gridIndexOf(lat, L + 8 * k);
            const int i8 = 2 * ib + k;
            y[2 + i8] = static_cast<uint8_t>(gi & 255);
            y[66 + i8 / 4] = static_cast<uint8_t>(y[66 + i8 / 4] | ((gi >> 8) << (2 * (i8 % 4))));
            y[2 + 32 + i8] = signs[k];
        }
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d * 0.9875f));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        y[74 + ib / 2] = static_cast<uint8_t>(y[74 + ib / 2] | (l << (4 * (ib % 2))));
    }
}

// -------------------------------------------------------------------------------------------- IQ3_XXS
// layout: d @0, qs[64] grid bytes @2, 8 x u32 (4 x 7-bit signs | scale << 28) @66
void iq3xxsBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ3XXS();
    constexpr int kMaxQ = 8;
    float scales[QK / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    uint8_t q3[64] = {};
    uint32_t scalesAndSigns[8] = {};
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 32 * ib, sigma2, 32, weight);
        } else {
            for (int i = 0; i < 32; ++i)
                weight[i] = xb[i] * xb[i];
        }
        const float max = foldGroup(xb, weight, 32, waux, xval, signs);
        std::memset(L, 0, 32);
        if (max < 1e-8f) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 32, kMaxQ, 15, 0.2f, false, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k] & 127);
        }
        for (int k = 0; k < 8; ++k)
            q3[8 * ib + k] = static_cast<uint8_t>(gridIndexOf(lat, L + 4 * k));
        scalesAndSigns[ib] =
            signs[0] | (signs[1] << 7) | (signs[2] << 14) | (static_cast<uint32_t>(signs[3]) << 21);
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    std::memset(y, 0, 98);
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d * 1.0125f));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        scalesAndSigns[ib] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y + 2, q3, 64);
    std::memcpy(y + 66, scalesAndSigns, 32);
}

// ---------------------------------------------------------------------------------------------- IQ3_S
// layout: d @0, qs[64] @2, qh[8] @66 (9th index bit), signs[32] @74, scales[4] @106
void iq3sBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ3S();
    constexpr int kMaxQ = 8;
    float scales[QK / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    std::memset(y, 0, 110);
    // ggml advances its qs / signs pointers only past sub-blocks that were not all zero, so a zero
    // sub-block shifts the later ones' index and sign bytes down (qh stays indexed by sub-block).
    int qsAt = 0, signsAt = 0;
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 32 * ib, sigma2, 32, weight);
        } else {
            for (int i = 0; i < 32; ++i)
                weight[i] = xb[i] * xb[i];
        }
        sqrtAll(weight, 32, waux);
        for (int k = 0; k < 4; ++k)
            signs[k] = plainSigns8(xb + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 32; ++i)
            max = std::max(max, xval[i]);
        std::memset(L, 0, 32);
        if (!max) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 32, kMaxQ, 9, 0.2f, true, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k]);
        }
        for (int k = 0; k < 8; ++k) {
            const int gi = gridIndexOf(lat, L + 4 * k);
            y[2 + qsAt + k] = static_cast<uint8_t>(gi & 255);
            y[66 + ib] = static_cast<uint8_t>(y[66 + ib] | ((gi >> 8) << k));
        }
        qsAt += 8;
        for (int k = 0; k < 4; ++k)
            y[74 + signsAt + k] = signs[k];
        signsAt += 4;
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d * 1.033f));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ib += 2) {
        const int l1 = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        const int l2 = clampi(nearest_int(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
        y[106 + ib / 2] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
}
} // namespace

void quantizeRowsIQ2_XXS(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq2xxsBlock, 66>(s, d, nr, nc, im);
}
void quantizeRowsIQ2_XS(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq2xsBlock, 74>(s, d, nr, nc, im);
}
void quantizeRowsIQ2_S(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq2sBlock, 82>(s, d, nr, nc, im);
}
void quantizeRowsIQ3_XXS(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq3xxsBlock, 98>(s, d, nr, nc, im);
}
void quantizeRowsIQ3_S(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq3sBlock, 110>(s, d, nr, nc, im);
}
} // namespace qz::ggml

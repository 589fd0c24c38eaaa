// K-quant, IQ4_NL and IQ4_XS block quantizers, written from README.md B.2-B.6.
// Blocks are written byte by byte at the offsets of B.2 (no struct punning); fp16 fields little-endian.
#include "ggml/kquants.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "common/fp16.h"
#include "ggml/quant_helpers.h"

namespace qz::ggml {

const int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

namespace {

constexpr int QK = kQK_K;  // 256

inline void putHalf(uint8_t* p, uint16_t h) {
    p[0] = static_cast<uint8_t>(h & 0xFF);
    p[1] = static_cast<uint8_t>(h >> 8);
}
inline uint16_t getHalf(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
// Store f as fp16 at p and return the value read back (GGML_FP32_TO_FP16 then GGML_FP16_TO_FP32).
inline float storeHalf(uint8_t* p, float f) {
    const uint16_t h = fp32ToFp16(f);
    putHalf(p, h);
    return fp16ToFp32(h);
}
inline int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }
// nearest_int (quant_helpers.h) inlined for the per-element requantization loops: same 1.5*2^23 trick,
// same result; the out-of-line call cost ~5% of the Q3_K/Q6_K time.
inline int nint(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    std::memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// 2-bit packing shared by Q2_K and Q3_K: element 128h + 32s + l at (qs[32h + l] >> 2s) & 3.
inline void pack2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                 (L[j + l + 96] << 6));
}

// ---------------------------------------------------------------------------------------------- Q2_K
// layout: scales[16] @0, qs[64] @16, d @80, dmin @82

void q2kRequantizeAndPack(const float* x, uint8_t* y, uint8_t* L, float dAll, float mAll) {
    const uint8_t* sc = y;
    for (int j = 0; j < QK / 16; ++j) {
        const float d = dAll * static_cast<float>(sc[j] & 0xF);
        if (!d) continue;
        const float dm = mAll * static_cast<float>(sc[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nint((x[16 * j + ii] + dm) / d);
            L[16 * j + ii] = static_cast<uint8_t>(clampi(l, 0, 3));
        }
    }
    pack2bit(L, y + 16);
}

void q2kRef(const float* x, uint8_t* y) {
    uint8_t L[QK];
    uint8_t Laux[16];
    float weights[16];
    float mins[QK / 16];
    float scales[QK / 16];
    const float q4scale = 15.f;
    float maxScale = 0, maxMin = 0;
    for (int j = 0; j < QK / 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
        if (scales[j] > maxScale) maxScale = scales[j];
        if (mins[j] > maxMin) maxMin = mins[j];
    }
    uint8_t* sc = y;
    if (maxScale > 0) {
        const float iscale = q4scale / maxScale;
        for (int j = 0; j < QK / 16; ++j) sc[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
        putHalf(y + 80, fp32ToFp16(maxScale / q4scale));
    } else {
        for (int j = 0; j < QK / 16; ++j) sc[j] = 0;
        putHalf(y + 80, fp32ToFp16(0.f));
    }
    if (maxMin > 0) {
        const float iscale = q4scale / maxMin;
        for (int j = 0; j < QK / 16; ++j) sc[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
        putHalf(y + 82, fp32ToFp16(maxMin / q4scale));
    } else {
        putHalf(y + 82, fp32ToFp16(0.f));
    }
    q2kRequantizeAndPack(x, y, L, fp16ToFp32(getHalf(y + 80)), fp16ToFp32(getHalf(y + 82)));
}

void q2kImpl(const float* x, uint8_t* y, const float* qwBlock) {
    uint8_t L[QK];
    uint8_t Laux[16];
    float mins[QK / 16];
    float scales[QK / 16];
    float sw[QK / 16];
    float weight[16];
    uint8_t Ls[QK / 16];
    uint8_t Lm[QK / 16];
    for (int j = 0; j < QK / 16; ++j) sw[j] = 0;
    float sumx2 = 0;
    for (int j = 0; j < QK; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / QK;
    for (int j = 0; j < QK / 16; ++j) {
        const float* qw = qwBlock + 16 * j;
        for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; ++l) sw[j] += weight[l];
        scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float dm = make_qp_quants(QK / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(QK / 16, 15, mins, Lm, sw);
    const float dRead = storeHalf(y + 80, dm);
    const float mRead = storeHalf(y + 82, mm);
    for (int j = 0; j < QK / 16; ++j) y[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    q2kRequantizeAndPack(x, y, L, dRead, mRead);
}

// ---------------------------------------------------------------------------------------------- Q3_K
// layout: hmask[32] @0, qs[64] @32, scales[12] @96, d @108

// Packs the 6-bit code l (0..63) of sub-block j into the 12 scale bytes (which start zeroed).
inline void q3kPackScale(uint8_t* s, int j, int l) {
    if (j < 8)
        s[j] = static_cast<uint8_t>(l & 0xF);
    else
        s[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
    l >>= 4;
    s[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
}

// Requantizes with the stored scales, then writes hmask and the low 2 bits. L holds codes 0..7.
void q3kRequantizeAndPack(const float* x, uint8_t* y, int8_t* L) {
    const uint8_t* s = y + 96;
    const float dAll = fp16ToFp32(getHalf(y + 108));
    for (int j = 0; j < 16; ++j) {
        int sc = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        sc = (sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        const float d = dAll * static_cast<float>(static_cast<int8_t>(sc));
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nint(x[16 * j + ii] / d);
            L[16 * j + ii] = static_cast<int8_t>(clampi(l, -4, 3) + 4);
        }
    }
    uint8_t* hmask = y;
    std::memset(hmask, 0, QK / 8);
    int m = 0;
    uint8_t hm = 1;
    uint8_t Lu[QK];
    for (int j = 0; j < QK; ++j) {
        int v = L[j];
        if (v > 3) {
            hmask[m] |= hm;
            v -= 4;
        }
        Lu[j] = static_cast<uint8_t>(v);
        if (++m == QK / 8) {
            m = 0;
            hm = static_cast<uint8_t>(hm << 1);
        }
    }
    pack2bit(Lu, y + 32);
}

void q3kRef(const float* x, uint8_t* y) {
    int8_t L[QK];
    float scales[QK / 16];
    float maxScale = 0, amax = 0;
    for (int j = 0; j < QK / 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
            amax = scale;
            maxScale = scales[j];
        }
    }
    uint8_t* s = y + 96;
    std::memset(s, 0, 12);
    if (maxScale != 0) {
        const float iscale = -32.f / maxScale;
        for (int j = 0; j < QK / 16; ++j) {
            int l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
            l = clampi(l, -32, 31) + 32;
            q3kPackScale(s, j, l);
        }
        putHalf(y + 108, fp32ToFp16(1 / iscale));
    } else {
        putHalf(y + 108, fp32ToFp16(0.f));
    }
    q3kRequantizeAndPack(x, y, L);
}

void q3kImpl(const float* x, uint8_t* y, const float* qwBlock) {
    float scales[QK / 16];
    float weight[16];
    float sw[QK / 16];
    int8_t Ls[QK / 16];
    int8_t L[QK];
    float sumx2 = 0;
    for (int j = 0; j < QK; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / QK;
    for (int j = 0; j < QK / 16; ++j) {
        const float* qw = qwBlock + 16 * j;
        for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    uint8_t* s = y + 96;
    std::memset(s, 0, 12);
    const float dBlock = make_qx_quants(QK / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < QK / 16; ++j) q3kPackScale(s, j, Ls[j]);
    putHalf(y + 108, fp32ToFp16(dBlock));
    q3kRequantizeAndPack(x, y, L);
}

// ------------------------------------------------------------------------------------- Q4_K and Q5_K
// Q4_K layout: d @0, dmin @2, scales[12] @4, qs[128] @16
// Q5_K layout: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48

inline void packScaleMinK4(uint8_t* s, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        s[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
}

// Requantizes every 32-element sub-block with the packed scales/mins; codes clamped to [0, nmax].
void k45Requantize(const float* x, const uint8_t* y, uint8_t* L, int nmax) {
    const float dAll = fp16ToFp32(getHalf(y));
    const float mAll = fp16ToFp32(getHalf(y + 2));
    for (int j = 0; j < QK / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, y + 4, &sc, &m);
        const float d = dAll * static_cast<float>(sc);
        if (!d) continue;
        const float dm = mAll * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nint((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(clampi(l, 0, nmax));
        }
    }
}

void q4kPack(const uint8_t* L, uint8_t* y) {
    uint8_t* q = y + 16;
    for (int j = 0; j < QK; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
    }
}

void q5kPack(const uint8_t* L, uint8_t* y) {
    uint8_t* qh = y + 16;
    uint8_t* ql = y + 48;
    std::memset(qh, 0, QK / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK; n += 64) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            int l2 = L[n + j + 32];
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
        }
        m1 = static_cast<uint8_t>(m1 << 2);
        m2 = static_cast<uint8_t>(m2 << 2);
        ql += 32;
    }
}

// ref path of Q4_K (nmax 15, rmin -1, nstep 20) and Q5_K (nmax 31, rmin -0.5, nstep 15)
void k45Ref(const float* x, uint8_t* y, int nmax, float rmin, int nstep) {
    uint8_t L[QK];
    uint8_t Laux[32];
    float weights[32];
    float mins[QK / 32];
    float scales[QK / 32];
    float maxScale = 0, maxMin = 0;
    for (int j = 0; j < QK / 32; ++j) {
        float sumx2 = 0;
        for (int l = 0; l < 32; ++l) sumx2 += x[32 * j + l] * x[32 * j + l];
        const float avx = std::sqrt(sumx2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = avx + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep,
                                     false);
        if (scales[j] > maxScale) maxScale = scales[j];
        if (mins[j] > maxMin) maxMin = mins[j];
    }
    const float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
    const float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
    for (int j = 0; j < QK / 32; ++j) {
        uint8_t ls = static_cast<uint8_t>(nearest_int(invScale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(nearest_int(invMin * mins[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        packScaleMinK4(y + 4, j, ls, lm);
    }
    putHalf(y, fp32ToFp16(maxScale / 63.f));
    putHalf(y + 2, fp32ToFp16(maxMin / 63.f));
    k45Requantize(x, y, L, nmax);
    if (nmax == 15)
        q4kPack(L, y);
    else
        q5kPack(L, y);
}

void k45Impl(const float* x, uint8_t* y, const float* qwBlock, int nmax) {
    uint8_t L[QK];
    uint8_t Laux[32];
    uint8_t Ls[QK / 32];
    uint8_t Lm[QK / 32];
    float weights[32];
    float sw[QK / 32];
    float mins[QK / 32];
    float scales[QK / 32];
    float sumx2 = 0;
    for (int l = 0; l < QK; ++l) sumx2 += x[l] * x[l];
    const float sigma2 = 2 * sumx2 / QK;
    for (int j = 0; j < QK / 32; ++j) {
        const float* qw = qwBlock + 32 * j;
        for (int l = 0; l < 32; ++l) weights[l] = qw[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36,
                                     false);
    }
    const float dBlock = make_qp_quants(QK / 32, 63, scales, Ls, sw);
    const float mBlock = make_qp_quants(QK / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK / 32; ++j) packScaleMinK4(y + 4, j, Ls[j], Lm[j]);
    putHalf(y, fp32ToFp16(dBlock));
    putHalf(y + 2, fp32ToFp16(mBlock));
    k45Requantize(x, y, L, nmax);
    if (nmax == 15)
        q4kPack(L, y);
    else
        q5kPack(L, y);
}

// ---------------------------------------------------------------------------------------------- Q6_K
// layout: ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208

void q6kBlock(const float* x, uint8_t* y, const float* qwBlock /*nullable*/) {
    int8_t L[QK];
    float scales[QK / 16];
    float maxScale = 0, maxAbsScale = 0;
    float sq[16];
    for (int ib = 0; ib < QK / 16; ++ib) {
        // Without an imatrix the weights are x^2 (rmse_type 1). Passing them as an explicit array gives the
        // same floats (x*x either way) and avoids make_qx_quants' per-element weight selection (~1.7x).
        const float* w = qwBlock ? qwBlock + 16 * ib : sq;
        if (!qwBlock)
            for (int l = 0; l < 16; ++l) sq[l] = x[16 * ib + l] * x[16 * ib + l];
        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, w);
        scales[ib] = scale;
        const float absScale = std::fabs(scale);
        if (absScale > maxAbsScale) {
            maxAbsScale = absScale;
            maxScale = scale;
        }
    }
    if (maxAbsScale < kGroupMaxEps) {
        std::memset(y, 0, 210);
        putHalf(y + 208, fp32ToFp16(0.f));
        return;
    }
    const float iscale = -128.f / maxScale;
    const float dAll = storeHalf(y + 208, 1 / iscale);
    int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
    for (int ib = 0; ib < QK / 16; ++ib)
        sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < QK / 16; ++j) {
        const float d = dAll * static_cast<float>(sc[j]);
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nint(x[16 * j + ii] / d);
            L[16 * j + ii] = static_cast<int8_t>(clampi(l, -32, 31) + 32);
        }
    }
    uint8_t* ql = y;
    uint8_t* qh = y + 128;
    for (int j = 0; j < QK; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l + 0] & 0xF;
            const uint8_t q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF;
            const uint8_t q4 = L[j + l + 96] & 0xF;
            ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
            ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
            qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                         ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

// -------------------------------------------------------------------------------------------- IQ4_NL
// layout: d @0, qs[16] @2. quantize_row_iq4_nl_impl with super_block_size = block_size = 32, ntry = 7.

// best_index_int8(16, kvalues_iq4nl, x): nearest level, ties to the upper index. ggml binary-searches
// for mu with val[mu-1] <= x < val[mu]; we count the levels val[1..14] <= x instead (same mu, no
// unpredictable branches), then make the same final float comparison. NaN: ggml's search ends at 15.
inline int bestIndexInt8(float x) {
    const int8_t* val = kIQ4NLValues;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    if (x != x) return 15;
    int mu = 1;
    for (int k = 1; k < 15; ++k) mu += val[k] <= x ? 1 : 0;
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

// sumqx = sum w*q*x, sumq2 = sum w*q*q over a 32-element sub-block at inverse scale id, q = values[l],
// l = bestIndexInt8(id*x); also writes l when L is given. The products in ggml's order, the sums sequential.
inline void iq4SumsPortable(const float* xb, const float* weight, float id, float& sumqx, float& sumq2,
                            uint8_t* L) {
    sumqx = sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const float al = id * xb[j];
        const int l = bestIndexInt8(al);
        if (L) L[j] = static_cast<uint8_t>(l);
        const float q = kIQ4NLValues[l];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
}

#if defined(__x86_64__) || defined(__i386__)
// values[i] for 8 indices i in 0..15 (the 16 levels as floats in two vectors)
__attribute__((target("avx2"))) inline __m256 iq4Level(__m256 tabLo, __m256 tabHi, __m256i i) {
    const __m256 lo = _mm256_permutevar8x32_ps(tabLo, i), hi = _mm256_permutevar8x32_ps(tabHi, i);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7))));
}

// bestIndexInt8 for 8 values: mu - 1 = number of levels val[1..14] <= x (a NaN counts none), then the
// same final comparison on the two neighbouring levels; x <= val[0] -> 0, x >= val[15] or NaN -> 15.
__attribute__((target("avx2"))) inline __m256i bestIndexInt8x8(__m256 x, const __m256* lv, __m256 tabLo,
                                                               __m256 tabHi) {
    __m256i mu = _mm256_set1_epi32(1);
    for (int k = 1; k < 15; ++k)
        mu = _mm256_sub_epi32(mu, _mm256_castps_si256(_mm256_cmp_ps(lv[k], x, _CMP_LE_OQ)));
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i mu1 = _mm256_sub_epi32(mu, one);
    const __m256 below = _mm256_cmp_ps(_mm256_sub_ps(x, iq4Level(tabLo, tabHi, mu1)),
                                       _mm256_sub_ps(iq4Level(tabLo, tabHi, mu), x), _CMP_LT_OQ);
    __m256i l =
        _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(mu), _mm256_castsi256_ps(mu1), below));
    l = _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(x, lv[0], _CMP_LE_OQ)), l);
    const __m256 top = _mm256_or_ps(_mm256_cmp_ps(x, lv[15], _CMP_GE_OQ), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(l), _mm256_castsi256_ps(_mm256_set1_epi32(15)), top));
}

__attribute__((target("avx2"))) void iq4SumsAvx2(const float* xb, const float* weight, float id, float& sumqx,
                                                 float& sumq2, uint8_t* L) {
    __m256 lv[16];
    for (int k = 0; k < 16; ++k)
        lv[k] = _mm256_set1_ps(kIQ4NLValues[k]);
    alignas(32) float tab[16];
    for (int k = 0; k < 16; ++k)
        tab[k] = kIQ4NLValues[k];
    const __m256 tabLo = _mm256_load_ps(tab), tabHi = _mm256_load_ps(tab + 8), vid = _mm256_set1_ps(id);
    alignas(32) float wqx[32], wqq[32];
    alignas(32) int32_t li[32];
    for (int c = 0; c < 32; c += 8) {
        const __m256 x = _mm256_loadu_ps(xb + c);
        const __m256i l = bestIndexInt8x8(_mm256_mul_ps(vid, x), lv, tabLo, tabHi);
        const __m256 q = iq4Level(tabLo, tabHi, l);
        const __m256 wq = _mm256_mul_ps(_mm256_loadu_ps(weight + c), q);
        _mm256_store_ps(wqx + c, _mm256_mul_ps(wq, x));
        _mm256_store_ps(wqq + c, _mm256_mul_ps(wq, q));
        if (L) _mm256_store_si256(reinterpret_cast<__m256i*>(li + c), l);
    }
    float sx = 0, s2 = 0;
    for (int j = 0; j < 32; ++j) {
        sx += wqx[j];
        s2 += wqq[j];
    }
    sumqx = sx;
    sumq2 = s2;
    if (L)
        for (int j = 0; j < 32; ++j)
            L[j] = static_cast<uint8_t>(li[j]);
}

__attribute__((target("avx2"))) void iq4NearestAvx2(const float* x, int* out) {
    __m256 lv[16];
    for (int k = 0; k < 16; ++k)
        lv[k] = _mm256_set1_ps(kIQ4NLValues[k]);
    alignas(32) float tab[16];
    for (int k = 0; k < 16; ++k)
        tab[k] = kIQ4NLValues[k];
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(out),
        bestIndexInt8x8(_mm256_loadu_ps(x), lv, _mm256_load_ps(tab), _mm256_load_ps(tab + 8)));
}

bool detectAvx2() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

inline void iq4Sums(const float* xb, const float* weight, float id, float& sumqx, float& sumq2, uint8_t* L) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return iq4SumsAvx2(xb, weight, id, sumqx, sumq2, L);
#endif
    iq4SumsPortable(xb, weight, id, sumqx, sumq2, L);
}

// Scale search of quantize_row_iq4_nl_impl for one 32-element sub-block xb (ntry = 7). sigma2 is
// 2*sum(x^2)/super_block_size of the enclosing super-block; qw (nullable) its 32 importances.
// Returns the scale (0 for an all-zero sub-block).
float iq4SubBlockScale(const float* xb, const float* qw, float sigma2) {
    constexpr int kBlock = 32;
    constexpr int ntry = 7;
    const int8_t* values = kIQ4NLValues;
    float weight[kBlock];
    if (qw) {
        for (int j = 0; j < kBlock; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
        for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < kBlock; ++j) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < kGroupMaxEps) return 0.f;
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx, sumq2;
    iq4Sums(xb, weight, id, sumqx, sumq2, nullptr);
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
        id = static_cast<float>(itry + values[0]) / max;
        iq4Sums(xb, weight, id, sumqx, sumq2, nullptr);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

// Packs 32-element groups of 4-bit indices: q4[16i + j] = L[32i + j] | L[32i + 16 + j] << 4.
inline void packIq4(const uint8_t* L, uint8_t* q4, int n) {
    for (int i = 0; i < n / 32; ++i)
        for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void iq4nlBlock(const float* x, uint8_t* y, const float* qw /*nullable*/) {
    float sigma2 = 0;
    for (int j = 0; j < 32; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / 32;
    const float scale = iq4SubBlockScale(x, qw, sigma2);
    putHalf(y, fp32ToFp16(scale));
    uint8_t L[32];
    const float id = scale ? 1 / scale : 0;  // the unrounded scale, as ggml
    for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(bestIndexInt8(id * x[j]));
    packIq4(L, y + 2, 32);
}

// IQ4_XS layout: d @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8 (quantize_row_iq4_nl_impl with
// super_block_size 256): 6-bit sub-block scales (ls - 32) relative to d = -max_scale/32.
void iq4xsBlock(const float* x, uint8_t* y, const float* qwBlock /*nullable*/) {
    float sigma2 = 0;
    for (int j = 0; j < QK; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / QK;
    float scales[QK / 32];
    float maxScale = 0, amaxScale = 0;
    for (int ib = 0; ib < QK / 32; ++ib) {
        scales[ib] = iq4SubBlockScale(x + 32 * ib, qwBlock ? qwBlock + 32 * ib : nullptr, sigma2);
        const float absD = std::fabs(scales[ib]);
        if (absD > amaxScale) {
            amaxScale = absD;
            maxScale = scales[ib];
        }
    }
    const float d = -maxScale / 32;
    putHalf(y, fp32ToFp16(d));
    const float id = d ? 1 / d : 0.f;
    uint16_t scalesH = 0;
    uint8_t* scalesL = y + 4;
    uint8_t L[QK];
    for (int ib = 0; ib < QK / 32; ++ib) {
        int l = clampi(nearest_int(id * scales[ib]), -32, 31);
        const float dl = d * static_cast<float>(l);
        const float idl = dl ? 1 / dl : 0.f;
        for (int j = 0; j < 32; ++j)
            L[32 * ib + j] = static_cast<uint8_t>(bestIndexInt8(idl * x[32 * ib + j]));
        l += 32;
        const uint8_t lLow = static_cast<uint8_t>(l & 0xF), lHigh = static_cast<uint8_t>(l >> 4);
        if (ib % 2 == 0)
            scalesL[ib / 2] = lLow;
        else
            scalesL[ib / 2] |= static_cast<uint8_t>(lLow << 4);
        scalesH |= static_cast<uint16_t>(lHigh << (2 * (ib % 8)));
    }
    putHalf(y + 2, scalesH);
    packIq4(L, y + 8, QK);
}

// ----------------------------------------------------------------------------------------- drivers

template <class RefFn, class ImplFn>
void runRows(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix, int typeSize,
             RefFn ref, ImplFn impl) {
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; ++r) {
        const float* x = src + r * ncols;
        uint8_t* y = dst + r * nb * typeSize;
        for (int64_t i = 0; i < nb; ++i) {
            if (imatrix)
                impl(x + i * QK, y + i * typeSize, imatrix + i * QK);
            else
                ref(x + i * QK, y + i * typeSize);
        }
    }
}

}  // namespace

void quantizeRowsQ2_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    runRows(src, dst, nrows, ncols, imatrix, 84, q2kRef, q2kImpl);
}

void quantizeRowsQ3_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    runRows(src, dst, nrows, ncols, imatrix, 110, q3kRef, q3kImpl);
}

void quantizeRowsQ4_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    runRows(
        src, dst, nrows, ncols, imatrix, 144, [](const float* x, uint8_t* y) { k45Ref(x, y, 15, -1.f, 20); },
        [](const float* x, uint8_t* y, const float* qw) { k45Impl(x, y, qw, 15); });
}

void quantizeRowsQ5_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    runRows(
        src, dst, nrows, ncols, imatrix, 176, [](const float* x, uint8_t* y) { k45Ref(x, y, 31, -0.5f, 15); },
        [](const float* x, uint8_t* y, const float* qw) { k45Impl(x, y, qw, 31); });
}

void quantizeRowsQ6_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    runRows(
        src, dst, nrows, ncols, imatrix, 210, [](const float* x, uint8_t* y) { q6kBlock(x, y, nullptr); },
        [](const float* x, uint8_t* y, const float* qw) { q6kBlock(x, y, qw); });
}

void quantizeRowsIQ4_XS(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    runRows(
        src, dst, nrows, ncols, imatrix, 136, [](const float* x, uint8_t* y) { iq4xsBlock(x, y, nullptr); },
        [](const float* x, uint8_t* y, const float* qw) { iq4xsBlock(x, y, qw); });
}

void quantizeRowsIQ4_NL(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    const int64_t nb = ncols / 32;
    for (int64_t r = 0; r < nrows; ++r) {
        const float* x = src + r * ncols;
        uint8_t* y = dst + r * nb * 18;
        for (int64_t i = 0; i < nb; ++i) iq4nlBlock(x + i * 32, y + i * 18, imatrix ? imatrix + i * 32 : nullptr);
    }
}

int iq4nlNearestIndex(float x) { return bestIndexInt8(x); }
void iq4nlNearestIndex8(const float* x, int* out) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return iq4NearestAvx2(x, out);
#endif
    for (int k = 0; k < 8; ++k)
        out[k] = bestIndexInt8(x[k]);
}

}  // namespace qz::ggml

// Unpacking of weight rows into the forms of vec_dot_impl.h, and the portable dot kernels.
// The element order and the integer values are those of ggml's dequantize_row_* (README.md B.3 and
// README-iquants.md), written as (float factor) · (integer scale) · (integer value): the i-quants'
// (0.5 + ls)·0.25 becomes (2·ls + 1)/8, and IQ1_S / IQ1_M's grid value ± 1/8 becomes (8·g ± 1)/8, so
// every product inside a block is an exact integer as in ggml's vec_dot kernels (README.md D.3).
#include <cstring>

#include "common/fp16.h"
#include "ggml/iq_grids.h"
#include "ggml/quant_helpers.h"
#include "ggml/vec_dot_impl.h"

namespace qz::ggml::vecdot {

namespace {

inline float h2f(uint16_t h) {
    return fp16ToFp32(h);
}

// 2^(e-128) (ggml's GGML_E8M0_TO_FP32_HALF).
inline float e8m0Half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
    return bitsFloat(bits);
}

inline int8_t signed8(int v) {
    return static_cast<int8_t>(v);
}

template <class Block> const Block* as(const uint8_t* p) {
    return reinterpret_cast<const Block*>(p);
}

void setScalesPer32(UnpackedK& u, const int* sc32, const int* mn32) {
    for (int j = 0; j < 8; ++j) {
        u.sc[2 * j] = u.sc[2 * j + 1] = static_cast<int16_t>(sc32[j]);
        u.mn[2 * j] = u.mn[2 * j + 1] = static_cast<int16_t>(mn32 ? mn32[j] : 0);
    }
}

void unpackQ2_K(const BlockQ2_K& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = h2f(x.dmin);
    for (int j = 0; j < 16; ++j) {
        u.sc[j] = static_cast<int16_t>(x.scales[j] & 0xF);
        u.mn[j] = static_cast<int16_t>(x.scales[j] >> 4);
    }
    if (!quants) return;
    int8_t* y = u.q;
    for (int half = 0; half < 2; ++half)
        for (int shift = 0; shift < 8; shift += 2)
            for (int part = 0; part < 2; ++part)
                for (int l = 0; l < 16; ++l)
                    *y++ = signed8((x.qs[32 * half + 16 * part + l] >> shift) & 3);
}

void unpackQ3_K(const BlockQ3_K& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = 0.f;
    for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? (x.scales[j] & 0xF) : (x.scales[j - 8] >> 4);
        const int hi = (x.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        u.sc[j] = static_cast<int16_t>((lo | (hi << 4)) - 32);
        u.mn[j] = 0;
    }
    if (!quants) return;
    int8_t* y = u.q;
    uint8_t m = 1;
    for (int half = 0; half < 2; ++half)
        for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1))
            for (int part = 0; part < 2; ++part)
                for (int l = 0; l < 16; ++l) {
                    const int q = (x.qs[32 * half + 16 * part + l] >> shift) & 3;
                    *y++ = signed8(q - ((x.hmask[16 * part + l] & m) ? 0 : 4));
                }
}

void scalesQ45K(const uint8_t* scales, int* sc, int* mn) {
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        get_scale_min_k4(j, scales, &s, &m);
        sc[j] = s;
        mn[j] = m;
    }
}

void unpackQ4_K(const BlockQ4_K& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = h2f(x.dmin);
    int sc[8], mn[8];
    scalesQ45K(x.scales, sc, mn);
    setScalesPer32(u, sc, mn);
    if (!quants) return;
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
            u.q[64 * c + l] = signed8(x.qs[32 * c + l] & 0xF);
            u.q[64 * c + 32 + l] = signed8(x.qs[32 * c + l] >> 4);
        }
}

void unpackQ5_K(const BlockQ5_K& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = h2f(x.dmin);
    int sc[8], mn[8];
    scalesQ45K(x.scales, sc, mn);
    setScalesPer32(u, sc, mn);
    if (!quants) return;
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
            const int h = x.qh[l] >> (2 * c);
            u.q[64 * c + l] = signed8((x.qs[32 * c + l] & 0xF) | ((h & 1) << 4));
            u.q[64 * c + 32 + l] = signed8((x.qs[32 * c + l] >> 4) | ((h & 2) << 3));
        }
}

void unpackQ6_K(const BlockQ6_K& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = 0.f;
    for (int j = 0; j < 16; ++j) {
        u.sc[j] = x.scales[j];
        u.mn[j] = 0;
    }
    if (!quants) return;
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = x.ql + 64 * h;
        const uint8_t* qh = x.qh + 32 * h;
        int8_t* y = u.q + 128 * h;
        for (int l = 0; l < 32; ++l) {
            y[l] = signed8(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            y[l + 32] = signed8(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            y[l + 64] = signed8(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            y[l + 96] = signed8(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

void unpackIQ4_XS(const BlockIQ4_XS& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = 0.f;
    int sc[8];
    for (int ib = 0; ib < 8; ++ib)
        sc[ib] =
            (((x.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x.scales_h >> (2 * ib)) & 3) << 4)) - 32;
    setScalesPer32(u, sc, nullptr);
    if (!quants) return;
    for (int ib = 0; ib < 8; ++ib)
        for (int j = 0; j < 16; ++j) {
            u.q[32 * ib + j] = kValuesIQ4NL[x.qs[16 * ib + j] & 0xF];
            u.q[32 * ib + 16 + j] = kValuesIQ4NL[x.qs[16 * ib + j] >> 4];
        }
}

void unpackTQ1_0(const BlockTQ1_0& x, UnpackedK& u, bool quants) {
    static constexpr uint8_t pow3[5] = {1, 3, 9, 27, 81};
    auto trit = [](uint8_t byte, uint8_t p) {
        const uint8_t q = static_cast<uint8_t>(byte * p);
        return signed8(((static_cast<int>(q) * 3) >> 8) - 1);
    };
    u.d = h2f(x.d);
    u.dmin = 0.f;
    for (int j = 0; j < 16; ++j)
        u.sc[j] = 1, u.mn[j] = 0;
    if (!quants) return;
    int8_t* y = u.q;
    for (int n = 0; n < 5; ++n)
        for (int m = 0; m < 32; ++m)
            *y++ = trit(x.qs[m], pow3[n]);
    for (int n = 0; n < 5; ++n)
        for (int m = 0; m < 16; ++m)
            *y++ = trit(x.qs[32 + m], pow3[n]);
    for (int n = 0; n < 4; ++n)
        for (int j = 0; j < 4; ++j)
            *y++ = trit(x.qh[j], pow3[n]);
}

void unpackTQ2_0(const BlockTQ2_0& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d);
    u.dmin = 0.f;
    for (int j = 0; j < 16; ++j)
        u.sc[j] = 1, u.mn[j] = 0;
    if (!quants) return;
    int8_t* y = u.q;
    for (int j = 0; j < 64; j += 32)
        for (int l = 0; l < 4; ++l)
            for (int m = 0; m < 32; ++m)
                *y++ = signed8(((x.qs[j + m] >> (2 * l)) & 3) - 1);
}

// 0xFF in byte j of the result where bit j of s is set.
constexpr uint64_t signMask(unsigned s) {
    uint64_t m = 0;
    for (int j = 0; j < 8; ++j)
        if ((s >> j) & 1) m |= uint64_t(0xFF) << (8 * j);
    return m;
}
struct SignMasks {
    uint64_t m[256];
    constexpr SignMasks() : m() {
        for (unsigned s = 0; s < 256; ++s)
            m[s] = signMask(s);
    }
};
inline constexpr SignMasks kSignMasks{};

// Eight grid bytes (all in 1..127), negated where the sign bit is set, 8 bytes at a time: -g = ~g + 1
// never carries into the next byte for g >= 1.
inline void put8(int8_t* y, uint64_t g, uint8_t signs) {
    const uint64_t m = kSignMasks.m[signs];
    const uint64_t v = (g ^ m) + (m & 0x0101010101010101ull);
    std::memcpy(y, &v, 8);
}
inline uint64_t grid8(const uint8_t* g) {
    uint64_t v;
    std::memcpy(&v, g, 8);
    return v;
}
inline uint64_t grid4x2(const uint8_t* g1, const uint8_t* g2) {
    uint32_t a, b;
    std::memcpy(&a, g1, 4);
    std::memcpy(&b, g2, 4);
    return a | (uint64_t(b) << 32);
}

void unpackIQ2_XXS(const BlockIQ2_XXS& x, UnpackedK& u) {
    u.d = h2f(x.d) * 0.125f;
    u.dmin = 0.f;
    int sc[8];
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib) {
        uint32_t aux[2];
        std::memcpy(aux, x.qs + 4 * ib, 8);
        sc[ib] = 2 * static_cast<int>(aux[1] >> 28) + 1;
        for (int l = 0; l < 4; ++l, y += 8) {
            const uint8_t* g = iqgrid::kIQ2XXS[(aux[0] >> (8 * l)) & 0xFF];
            const uint8_t s = iqgrid::kSigns[(aux[1] >> (7 * l)) & 127];
            put8(y, grid8(g), s);
        }
    }
    setScalesPer32(u, sc, nullptr);
}

void unpackIQ2_XS(const BlockIQ2_XS& x, UnpackedK& u) {
    u.d = h2f(x.d) * 0.125f;
    u.dmin = 0.f;
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib) {
        u.sc[2 * ib] = static_cast<int16_t>(2 * (x.scales[ib] & 0xF) + 1);
        u.sc[2 * ib + 1] = static_cast<int16_t>(2 * (x.scales[ib] >> 4) + 1);
        u.mn[2 * ib] = u.mn[2 * ib + 1] = 0;
        for (int l = 0; l < 4; ++l, y += 8) {
            const uint16_t q = x.qs[4 * ib + l];
            const uint8_t* g = iqgrid::kIQ2XS[q & 511];
            const uint8_t s = iqgrid::kSigns[q >> 9];
            put8(y, grid8(g), s);
        }
    }
}

void unpackIQ2_S(const BlockIQ2_S& x, UnpackedK& u) {
    u.d = h2f(x.d) * 0.125f;
    u.dmin = 0.f;
    const uint8_t* qs = x.qs;
    const uint8_t* signs = x.qs + QK_K / 8;
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib, qs += 4, signs += 4) {
        u.sc[2 * ib] = static_cast<int16_t>(2 * (x.scales[ib] & 0xF) + 1);
        u.sc[2 * ib + 1] = static_cast<int16_t>(2 * (x.scales[ib] >> 4) + 1);
        u.mn[2 * ib] = u.mn[2 * ib + 1] = 0;
        for (int l = 0; l < 4; ++l, y += 8) {
            const uint8_t* g = iqgrid::kIQ2S[qs[l] | (((x.qh[ib] >> (2 * l)) & 3) << 8)];
            put8(y, grid8(g), signs[l]);
        }
    }
}

void unpackIQ3_XXS(const BlockIQ3_XXS& x, UnpackedK& u) {
    u.d = h2f(x.d) * 0.25f;
    u.dmin = 0.f;
    const uint8_t* qs = x.qs;
    const uint8_t* scalesAndSigns = x.qs + QK_K / 4;
    int sc[8];
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib, qs += 8) {
        uint32_t aux;
        std::memcpy(&aux, scalesAndSigns + 4 * ib, 4);
        sc[ib] = 2 * static_cast<int>(aux >> 28) + 1;
        for (int l = 0; l < 4; ++l, y += 8) {
            const uint8_t s = iqgrid::kSigns[(aux >> (7 * l)) & 127];
            const uint8_t* g1 = iqgrid::kIQ3XXS[qs[2 * l]];
            const uint8_t* g2 = iqgrid::kIQ3XXS[qs[2 * l + 1]];
            put8(y, grid4x2(g1, g2), s);
        }
    }
    setScalesPer32(u, sc, nullptr);
}

void unpackIQ3_S(const BlockIQ3_S& x, UnpackedK& u) {
    u.d = h2f(x.d);
    u.dmin = 0.f;
    const uint8_t* qs = x.qs;
    const uint8_t* signs = x.signs;
    int sc[8];
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib, qs += 8, signs += 4) {
        sc[ib] = 1 + 2 * ((x.scales[ib / 2] >> (4 * (ib % 2))) & 0xF);
        const uint8_t qh = x.qh[ib];
        for (int l = 0; l < 4; ++l, y += 8) {
            const uint8_t* g1 = iqgrid::kIQ3S[qs[2 * l] | (((qh >> (2 * l)) & 1) << 8)];
            const uint8_t* g2 = iqgrid::kIQ3S[qs[2 * l + 1] | (((qh >> (2 * l + 1)) & 1) << 8)];
            put8(y, grid4x2(g1, g2), signs[l]);
        }
    }
    setScalesPer32(u, sc, nullptr);
}

void unpackIQ1_S(const BlockIQ1_S& x, UnpackedK& u, bool quants) {
    u.d = h2f(x.d) * 0.125f;
    u.dmin = 0.f;
    const uint8_t* qs = x.qs;
    int sc[8];
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib, qs += 4) {
        const uint16_t qh = x.qh[ib];
        sc[ib] = 2 * ((qh >> 12) & 7) + 1;
        const int delta = qh & 0x8000 ? -1 : 1;
        if (quants)
            for (int l = 0; l < 4; ++l, y += 8) {
                const int8_t* g = iqgrid::kIQ1S[qs[l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; ++j)
                    y[j] = signed8(8 * g[j] + delta);
            }
    }
    setScalesPer32(u, sc, nullptr);
}

void unpackIQ1_M(const BlockIQ1_M& x, UnpackedK& u, bool quants) {
    uint16_t sc[4];
    std::memcpy(sc, x.scales, 8);
    const uint16_t dh = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) |
                                              ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
    u.d = h2f(dh) * 0.125f;
    u.dmin = 0.f;
    const uint8_t* qs = x.qs;
    const uint8_t* qh = x.qh;
    int8_t* y = u.q;
    for (int ib = 0; ib < 8; ++ib, qs += 4, qh += 2) {
        u.sc[2 * ib] = static_cast<int16_t>(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1);
        u.sc[2 * ib + 1] = static_cast<int16_t>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
        u.mn[2 * ib] = u.mn[2 * ib + 1] = 0;
        if (quants)
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint8_t h = qh[l / 2];
                const int hi = l % 2 ? (h >> 4) & 7 : h & 7;
                const bool neg = l % 2 ? (h & 0x80) : (h & 0x08);
                const int8_t* g = iqgrid::kIQ1S[qs[l] | (hi << 8)];
                for (int j = 0; j < 8; ++j)
                    y[j] = signed8(8 * g[j] + (neg ? -1 : 1));
            }
    }
}

} // namespace

Form formOf(DType t) {
    switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
        return Form::Float;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::IQ4_NL:
    case DType::MXFP4:
        return Form::B32;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ3_XXS:
    case DType::IQ3_S:
    case DType::IQ1_S:
    case DType::IQ1_M:
    case DType::IQ4_XS:
    case DType::TQ1_0:
    case DType::TQ2_0:
        return Form::K;
    default:
        return Form::None;
    }
}

int unpackedOffset(DType t) {
    switch (t) {
    case DType::Q2_K:
    case DType::Q4_K:
    case DType::Q5_K:
        return 0; // 0..3, 0..15, 0..31
    case DType::Q3_K:
        return 4; // -4..3
    case DType::Q6_K:
        return 32; // -32..31
    case DType::TQ1_0:
    case DType::TQ2_0:
        return 1; // -1..1 (TQ2_0: ..2)
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
        return 43; // grid values ±(8..43)
    case DType::IQ3_XXS:
        return 62; // ±(4..62)
    case DType::IQ3_S:
        return 15; // ±(1..15)
    case DType::IQ1_S:
    case DType::IQ1_M:
        return 9; // 8·g ± 1, g in {-1, 0, 1}
    default:
        return -1; // IQ4_XS: -127..113
    }
}

bool hasMins(DType t) {
    return t == DType::Q2_K || t == DType::Q4_K || t == DType::Q5_K;
}

void unpackK(DType t, const uint8_t* src, UnpackedK* dst, int64_t nb, bool avx2) {
    const bool simd = avx2 && hasQuantsAvx2(t);
    const size_t bs = traits(t).typeSize;
    const int offset = unpackedOffset(t);
    for (int64_t i = 0; i < nb; ++i) {
        UnpackedK& u = dst[i];
        switch (t) {
        case DType::Q2_K:
            unpackQ2_K(as<BlockQ2_K>(src)[i], u, !simd);
            break;
        case DType::Q3_K:
            unpackQ3_K(as<BlockQ3_K>(src)[i], u, !simd);
            break;
        case DType::Q4_K:
            unpackQ4_K(as<BlockQ4_K>(src)[i], u, !simd);
            break;
        case DType::Q5_K:
            unpackQ5_K(as<BlockQ5_K>(src)[i], u, !simd);
            break;
        case DType::Q6_K:
            unpackQ6_K(as<BlockQ6_K>(src)[i], u, !simd);
            break;
        case DType::IQ4_XS:
            unpackIQ4_XS(as<BlockIQ4_XS>(src)[i], u, !simd);
            break;
        case DType::TQ1_0:
            unpackTQ1_0(as<BlockTQ1_0>(src)[i], u, !simd);
            break;
        case DType::TQ2_0:
            unpackTQ2_0(as<BlockTQ2_0>(src)[i], u, !simd);
            break;
        case DType::IQ2_XXS:
            unpackIQ2_XXS(as<BlockIQ2_XXS>(src)[i], u);
            break;
        case DType::IQ2_XS:
            unpackIQ2_XS(as<BlockIQ2_XS>(src)[i], u);
            break;
        case DType::IQ2_S:
            unpackIQ2_S(as<BlockIQ2_S>(src)[i], u);
            break;
        case DType::IQ3_XXS:
            unpackIQ3_XXS(as<BlockIQ3_XXS>(src)[i], u);
            break;
        case DType::IQ3_S:
            unpackIQ3_S(as<BlockIQ3_S>(src)[i], u);
            break;
        case DType::IQ1_S:
            unpackIQ1_S(as<BlockIQ1_S>(src)[i], u, !simd);
            break;
        case DType::IQ1_M:
            unpackIQ1_M(as<BlockIQ1_M>(src)[i], u, !simd);
            break;
        default:
            std::memset(&u, 0, sizeof u);
            break;
        }
        if (simd) unpackQuantsAvx2(t, src + i * bs, u.q);
        u.offset = offset;
        for (int j = 0; j < QK_K / 16; ++j)
            u.so[j] = static_cast<int16_t>(offset > 0 ? offset * u.sc[j] : 0);
        if (offset > 0)
            for (int j = 0; j < QK_K; ++j)
                u.q[j] = static_cast<int8_t>(u.q[j] + offset);
    }
}

void unpackB32(DType t, const uint8_t* src, UnpackedB32* dst, int64_t nb, bool avx2) {
    if (avx2 && hasQuantsAvx2(t)) {
        unpackB32Avx2(t, src, dst, nb);
        return;
    }
    for (int64_t i = 0; i < nb; ++i) {
        UnpackedB32& u = dst[i];
        u.m = 0.f;
        switch (t) {
        case DType::Q4_0: {
            const auto& x = as<BlockQ4_0>(src)[i];
            u.d = h2f(x.d);
            for (int j = 0; j < 16; ++j) {
                u.q[j] = signed8((x.qs[j] & 0xF) - 8);
                u.q[j + 16] = signed8((x.qs[j] >> 4) - 8);
            }
            break;
        }
        case DType::Q4_1: {
            const auto& x = as<BlockQ4_1>(src)[i];
            u.d = h2f(x.d);
            u.m = h2f(x.m);
            for (int j = 0; j < 16; ++j) {
                u.q[j] = signed8(x.qs[j] & 0xF);
                u.q[j + 16] = signed8(x.qs[j] >> 4);
            }
            break;
        }
        case DType::Q5_0:
        case DType::Q5_1: {
            const bool one = t == DType::Q5_1;
            const uint8_t* b = src + i * (one ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0));
            uint16_t dh;
            std::memcpy(&dh, b, 2);
            u.d = h2f(dh);
            if (one) {
                std::memcpy(&dh, b + 2, 2);
                u.m = h2f(dh);
            }
            uint32_t qh;
            std::memcpy(&qh, b + (one ? 4 : 2), 4);
            const uint8_t* qs = b + (one ? 8 : 6);
            const int off = one ? 0 : 16;
            for (int j = 0; j < 16; ++j) {
                u.q[j] = signed8(((qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - off);
                u.q[j + 16] = signed8(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - off);
            }
            break;
        }
        case DType::Q8_0: {
            const auto& x = as<BlockQ8_0>(src)[i];
            u.d = h2f(x.d);
            std::memcpy(u.q, x.qs, 32);
            break;
        }
        case DType::IQ4_NL: {
            const auto& x = as<BlockIQ4_NL>(src)[i];
            u.d = h2f(x.d);
            for (int j = 0; j < 16; ++j) {
                u.q[j] = kValuesIQ4NL[x.qs[j] & 0xF];
                u.q[j + 16] = kValuesIQ4NL[x.qs[j] >> 4];
            }
            break;
        }
        case DType::MXFP4: {
            const auto& x = as<BlockMXFP4>(src)[i];
            u.d = e8m0Half(x.e);
            for (int j = 0; j < 16; ++j) {
                u.q[j] = kValuesMXFP4[x.qs[j] & 0xF];
                u.q[j + 16] = kValuesMXFP4[x.qs[j] >> 4];
            }
            break;
        }
        default:
            std::memset(&u, 0, sizeof u);
            break;
        }
    }
}

void decodeFloats(DType t, const uint8_t* src, float* dst, int64_t n) {
    if (t == DType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        return;
    }
    if (t == DType::F16 && haveAvx2()) {
        decodeF16Avx2(reinterpret_cast<const uint16_t*>(src), dst, n);
        return;
    }
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = t == DType::F16 ? fp16ToFp32(h) : bf16ToFp32(h);
    }
}

float dotKScalar(const UnpackedK* w, const BlockQ8_K* y, int64_t nb) {
    float sum = 0.f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 16; ++j) {
            int32_t s = 0;
            for (int k = 0; k < 16; ++k)
                s += w[b].q[16 * j + k] * y[b].qs[16 * j + k];
            isum += s * w[b].sc[j] - w[b].so[j] * y[b].bsums[j];
            msum += w[b].mn[j] * y[b].bsums[j];
        }
        const float yd = y[b].d;
        sum += (yd * w[b].d) * static_cast<float>(isum) - (yd * w[b].dmin) * static_cast<float>(msum);
    }
    return sum;
}

float dotB32Scalar(const UnpackedB32* w, const uint8_t* y, int64_t nb, bool q81) {
    const size_t bs = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    const size_t qsOff = q81 ? 4 : 2;
    float sum = 0.f;
    for (int64_t b = 0; b < nb; ++b, y += bs) {
        const auto* qs = reinterpret_cast<const int8_t*>(y + qsOff);
        int32_t isum = 0;
        for (int j = 0; j < 32; ++j)
            isum += w[b].q[j] * qs[j];
        uint16_t h;
        std::memcpy(&h, y, 2);
        sum += (w[b].d * h2f(h)) * static_cast<float>(isum);
        if (q81) {
            std::memcpy(&h, y + 2, 2);
            sum += w[b].m * h2f(h);
        }
    }
    return sum;
}

float dotF32Scalar(const float* a, const float* b, int64_t n) {
    float sum = 0.f;
    for (int64_t i = 0; i < n; ++i)
        sum += a[i] * b[i];
    return sum;
}

} // namespace qz::ggml::vecdot

// Dequantization of ggml block types (README.md B.3). Each formula is evaluated in the same
// order as ggml's dequantize_row_* so that values are bit-identical to llama.cpp's.
#include "ggml/dequantize.h"

#include <cstring>

#include "common/fp16.h"
#include "ggml/block_types.h"
#include "ggml/iq_grids.h"
#include "ggml/quant_helpers.h"

namespace qz::ggml {

namespace {

inline float h2f(uint16_t h) { return fp16ToFp32(h); }

void deqQ4_0(const BlockQ4_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK4_0 / 2; ++j) {
            y[j] = static_cast<float>((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void deqQ4_1(const BlockQ4_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < QK4_1 / 2; ++j) {
            y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void deqQ5_0(const BlockQ5_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
        const float d = h2f(x[i].d);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK5_0 / 2; ++j) {
            const int h0 = static_cast<int>((qh >> j) << 4) & 0x10;
            const int h1 = static_cast<int>(qh >> (j + 12)) & 0x10;
            y[j] = static_cast<float>(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + QK5_0 / 2] = static_cast<float>(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void deqQ5_1(const BlockQ5_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK5_1 / 2; ++j) {
            const int h0 = static_cast<int>((qh >> j) << 4) & 0x10;
            const int h1 = static_cast<int>(qh >> (j + 12)) & 0x10;
            y[j] = static_cast<float>((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + QK5_1 / 2] = static_cast<float>((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

void deqQ8_0(const BlockQ8_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK8_0) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK8_0; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

void deqQ8_1(const BlockQ8_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK8_1) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK8_1; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

void deqQ2_K(const BlockQ2_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t* q = x[i].qs;
        int is = 0;
        for (int half = 0; half < 2; ++half, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; ++part) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * static_cast<float>(sc & 0xF);
                    const float ml = dmin * static_cast<float>(sc >> 4);
                    const uint8_t* qq = q + 16 * part;
                    for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((qq[l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void deqQ3_K(const BlockQ3_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float dAll = h2f(x[i].d);
        int8_t scales[16];
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? (x[i].scales[j] & 0xF) : (x[i].scales[j - 8] >> 4);
            const int hi = (x[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            scales[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
        }
        const uint8_t* q = x[i].qs;
        const uint8_t* hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int half = 0; half < 2; ++half, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
                for (int part = 0; part < 2; ++part) {
                    const float dl = dAll * static_cast<float>(scales[is++]);
                    const uint8_t* qq = q + 16 * part;
                    const uint8_t* hh = hm + 16 * part;
                    for (int l = 0; l < 16; ++l) {
                        const int v = ((qq[l] >> shift) & 3) - ((hh[l] & m) ? 0 : 4);
                        *y++ = dl * static_cast<float>(v);
                    }
                }
            }
        }
    }
}

void deqQ4_K(const BlockQ4_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t* q = x[i].qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
            for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
    }
}

void deqQ5_K(const BlockQ5_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
            u1 = static_cast<uint8_t>(u1 << 2);
            u2 = static_cast<uint8_t>(u2 << 2);
        }
    }
}

void deqQ6_K(const BlockQ6_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
                y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
            }
        }
    }
}

void deqQ8_K(const BlockQ8_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = x[i].d;
        for (int j = 0; j < QK_K; ++j) *y++ = d * static_cast<float>(x[i].qs[j]);
    }
}

void deqIQ4_NL(const BlockIQ4_NL* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK4_NL) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK4_NL / 2; ++j) {
            y[j] = d * static_cast<float>(kValuesIQ4NL[x[i].qs[j] & 0xF]);
            y[j + QK4_NL / 2] = d * static_cast<float>(kValuesIQ4NL[x[i].qs[j] >> 4]);
        }
    }
}

void deqIQ4_XS(const BlockIQ4_XS* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint16_t scalesH = x[i].scales_h;
        const uint8_t* qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ++ib, y += 32, qs += 16) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scalesH >> (2 * ib)) & 3) << 4);
            const float dl = d * static_cast<float>(ls - 32);
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * static_cast<float>(kValuesIQ4NL[qs[j] & 0xF]);
                y[j + 16] = dl * static_cast<float>(kValuesIQ4NL[qs[j] >> 4]);
            }
        }
    }
}

void deqTQ1_0(const BlockTQ1_0* x, float* y, int64_t nb) {
    static constexpr uint8_t pow3[5] = {1, 3, 9, 27, 81};
    auto trit = [](uint8_t byte, uint8_t p) {
        const uint8_t q = static_cast<uint8_t>(byte * p);  // mod 256
        return static_cast<int>((static_cast<uint16_t>(q) * 3) >> 8) - 1;
    };
    constexpr size_t qsBytes = sizeof(BlockTQ1_0::qs);  // 48 = 32 + 16
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        for (size_t j = 0; j < qsBytes - qsBytes % 32; j += 32)
            for (int n = 0; n < 5; ++n)
                for (size_t m = 0; m < 32; ++m) *y++ = static_cast<float>(trit(x[i].qs[j + m], pow3[n])) * d;
        for (size_t j = qsBytes - qsBytes % 32; j < qsBytes; j += 16)
            for (int n = 0; n < 5; ++n)
                for (size_t m = 0; m < 16; ++m) *y++ = static_cast<float>(trit(x[i].qs[j + m], pow3[n])) * d;
        for (int n = 0; n < 4; ++n)
            for (size_t j = 0; j < sizeof(BlockTQ1_0::qh); ++j)
                *y++ = static_cast<float>(trit(x[i].qh[j], pow3[n])) * d;
    }
}

void deqTQ2_0(const BlockTQ2_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        for (size_t j = 0; j < sizeof(BlockTQ2_0::qs); j += 32)
            for (int l = 0; l < 4; ++l)
                for (size_t m = 0; m < 32; ++m)
                    *y++ = static_cast<float>(((x[i].qs[j + m] >> (2 * l)) & 3) - 1) * d;
    }
}

// E8M0 exponent to float, halved (ggml's GGML_E8M0_TO_FP32_HALF): 2^(e-128).
inline float e8m0Half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
    return bitsFloat(bits);
}

void deqMXFP4(const BlockMXFP4* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK_MXFP4) {
        const float d = e8m0Half(x[i].e);
        for (int j = 0; j < QK_MXFP4 / 2; ++j) {
            y[j] = static_cast<float>(kValuesMXFP4[x[i].qs[j] & 0xF]) * d;
            y[j + QK_MXFP4 / 2] = static_cast<float>(kValuesMXFP4[x[i].qs[j] >> 4]) * d;
        }
    }
}

// ---- i-quants (core/ggml/README-iquants.md "Dequantization"): y = scale * grid byte * sign, in
// ggml's operand order (upstream ggml-quants.c dequantize_row_iq2_xxs .. dequantize_row_iq1_m).
inline float signOf(uint8_t signs, int j) { return (signs >> j) & 1 ? -1.f : 1.f; }

void deqIQ2_XXS(const BlockIQ2_XXS* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            uint32_t aux[2];
            std::memcpy(aux, x[i].qs + 4 * ib, 8);
            const float db = d * (0.5f + static_cast<float>(aux[1] >> 28)) * 0.25f;
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint8_t* g = iqgrid::kIQ2XXS[(aux[0] >> (8 * l)) & 0xFF];
                const uint8_t s = iqgrid::kSigns[(aux[1] >> (7 * l)) & 127];
                for (int j = 0; j < 8; ++j) y[j] = db * static_cast<float>(g[j]) * signOf(s, j);
            }
        }
    }
}

void deqIQ2_XS(const BlockIQ2_XS* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float db[2] = {d * (0.5f + static_cast<float>(x[i].scales[ib] & 0xF)) * 0.25f,
                                 d * (0.5f + static_cast<float>(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint16_t q = x[i].qs[4 * ib + l];
                const uint8_t* g = iqgrid::kIQ2XS[q & 511];
                const uint8_t s = iqgrid::kSigns[q >> 9];
                for (int j = 0; j < 8; ++j) y[j] = db[l / 2] * static_cast<float>(g[j]) * signOf(s, j);
            }
        }
    }
}

void deqIQ2_S(const BlockIQ2_S* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* qs = x[i].qs;
        const uint8_t* signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ++ib, qs += 4, signs += 4) {
            const float db[2] = {d * (0.5f + static_cast<float>(x[i].scales[ib] & 0xF)) * 0.25f,
                                 d * (0.5f + static_cast<float>(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; ++l, y += 8) {
                const int idx = qs[l] | (((x[i].qh[ib] >> (2 * l)) & 3) << 8);
                const uint8_t* g = iqgrid::kIQ2S[idx];
                for (int j = 0; j < 8; ++j) y[j] = db[l / 2] * static_cast<float>(g[j]) * signOf(signs[l], j);
            }
        }
    }
}

void deqIQ3_XXS(const BlockIQ3_XXS* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* qs = x[i].qs;
        const uint8_t* scalesAndSigns = x[i].qs + QK_K / 4;
        for (int ib = 0; ib < QK_K / 32; ++ib, qs += 8) {
            uint32_t aux;
            std::memcpy(&aux, scalesAndSigns + 4 * ib, 4);
            const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint8_t s = iqgrid::kSigns[(aux >> (7 * l)) & 127];
                const uint8_t* g1 = iqgrid::kIQ3XXS[qs[2 * l]];
                const uint8_t* g2 = iqgrid::kIQ3XXS[qs[2 * l + 1]];
                for (int j = 0; j < 4; ++j) {
                    y[j] = db * static_cast<float>(g1[j]) * signOf(s, j);
                    y[j + 4] = db * static_cast<float>(g2[j]) * signOf(s, j + 4);
                }
            }
        }
    }
}

void deqIQ3_S(const BlockIQ3_S* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* qs = x[i].qs;
        const uint8_t* signs = x[i].signs;
        for (int ib = 0; ib < QK_K / 32; ++ib, qs += 8, signs += 4) {
            const int sc = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
            const float db = d * static_cast<float>(1 + 2 * sc);
            const uint8_t qh = x[i].qh[ib];
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint8_t* g1 = iqgrid::kIQ3S[qs[2 * l] | (((qh >> (2 * l)) & 1) << 8)];
                const uint8_t* g2 = iqgrid::kIQ3S[qs[2 * l + 1] | (((qh >> (2 * l + 1)) & 1) << 8)];
                for (int j = 0; j < 4; ++j) {
                    y[j] = db * static_cast<float>(g1[j]) * signOf(signs[l], j);
                    y[j + 4] = db * static_cast<float>(g2[j]) * signOf(signs[l], j + 4);
                }
            }
        }
    }
}

constexpr float kIQ1Delta = 0.125f;

void deqIQ1_S(const BlockIQ1_S* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ++ib, qs += 4) {
            const uint16_t qh = x[i].qh[ib];
            const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -kIQ1Delta : kIQ1Delta;
            for (int l = 0; l < 4; ++l, y += 8) {
                const int8_t* g = iqgrid::kIQ1S[qs[l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(g[j]) + delta);
            }
        }
    }
}

void deqIQ1_M(const BlockIQ1_M* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        uint16_t sc[4];
        std::memcpy(sc, x[i].scales, 8);
        const uint16_t dh = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) |
                                                  ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
        const float d = h2f(dh);
        const uint8_t* qs = x[i].qs;
        const uint8_t* qh = x[i].qh;
        for (int ib = 0; ib < QK_K / 32; ++ib, qs += 4, qh += 2) {
            const float dl1 = d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1);
            const float dl2 = d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint8_t h = qh[l / 2];
                const int hi = l % 2 ? (h >> 4) & 7 : h & 7;
                const bool neg = l % 2 ? (h & 0x80) : (h & 0x08);
                const float delta = neg ? -kIQ1Delta : kIQ1Delta;
                const float dl = l < 2 ? dl1 : dl2;
                const int8_t* g = iqgrid::kIQ1S[qs[l] | (hi << 8)];
                for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(g[j]) + delta);
            }
        }
    }
}

template <class Block>
const Block* as(const uint8_t* p) {
    return reinterpret_cast<const Block*>(p);
}

}  // namespace

bool canDequantize(DType t) {
    switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q8_1: case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K:
    case DType::Q6_K: case DType::Q8_K: case DType::IQ4_NL: case DType::IQ4_XS: case DType::TQ1_0:
    case DType::TQ2_0: case DType::MXFP4: case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S:
    case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ1_S: case DType::IQ1_M:
        return true;
    default:
        return false;
    }
}

bool dequantize(DType t, const uint8_t* src, float* dst, int64_t n) {
    if (!canDequantize(t) || n < 0) return false;
    const auto& tr = traits(t);
    if (n % tr.blockSize != 0) return false;
    const int64_t nb = n / tr.blockSize;
    switch (t) {
    case DType::Q4_0: deqQ4_0(as<BlockQ4_0>(src), dst, nb); break;
    case DType::Q4_1: deqQ4_1(as<BlockQ4_1>(src), dst, nb); break;
    case DType::Q5_0: deqQ5_0(as<BlockQ5_0>(src), dst, nb); break;
    case DType::Q5_1: deqQ5_1(as<BlockQ5_1>(src), dst, nb); break;
    case DType::Q8_0: deqQ8_0(as<BlockQ8_0>(src), dst, nb); break;
    case DType::Q8_1: deqQ8_1(as<BlockQ8_1>(src), dst, nb); break;
    case DType::Q2_K: deqQ2_K(as<BlockQ2_K>(src), dst, nb); break;
    case DType::Q3_K: deqQ3_K(as<BlockQ3_K>(src), dst, nb); break;
    case DType::Q4_K: deqQ4_K(as<BlockQ4_K>(src), dst, nb); break;
    case DType::Q5_K: deqQ5_K(as<BlockQ5_K>(src), dst, nb); break;
    case DType::Q6_K: deqQ6_K(as<BlockQ6_K>(src), dst, nb); break;
    case DType::Q8_K: deqQ8_K(as<BlockQ8_K>(src), dst, nb); break;
    case DType::IQ4_NL: deqIQ4_NL(as<BlockIQ4_NL>(src), dst, nb); break;
    case DType::IQ4_XS: deqIQ4_XS(as<BlockIQ4_XS>(src), dst, nb); break;
    case DType::TQ1_0: deqTQ1_0(as<BlockTQ1_0>(src), dst, nb); break;
    case DType::TQ2_0: deqTQ2_0(as<BlockTQ2_0>(src), dst, nb); break;
    case DType::MXFP4: deqMXFP4(as<BlockMXFP4>(src), dst, nb); break;
    case DType::IQ2_XXS: deqIQ2_XXS(as<BlockIQ2_XXS>(src), dst, nb); break;
    case DType::IQ2_XS: deqIQ2_XS(as<BlockIQ2_XS>(src), dst, nb); break;
    case DType::IQ2_S: deqIQ2_S(as<BlockIQ2_S>(src), dst, nb); break;
    case DType::IQ3_XXS: deqIQ3_XXS(as<BlockIQ3_XXS>(src), dst, nb); break;
    case DType::IQ3_S: deqIQ3_S(as<BlockIQ3_S>(src), dst, nb); break;
    case DType::IQ1_S: deqIQ1_S(as<BlockIQ1_S>(src), dst, nb); break;
    case DType::IQ1_M: deqIQ1_M(as<BlockIQ1_M>(src), dst, nb); break;
    default: return false;
    }
    return true;
}

}  // namespace qz::ggml

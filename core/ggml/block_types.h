// ggml quantization block layouts (README.md B.2), as packed structs with their sizes pinned.
//
// Blocks are read straight out of memory-mapped GGUF files and written into output buffers, so the
// structs are declared packed (alignment 1: any byte address is valid) with exactly ggml's field
// order. fp16 fields hold IEEE binary16 bits (little-endian host assumed, as ggml does).
// QK = elements per block: 32 for the legacy types and IQ4_NL/MXFP4, QK_K = 256 for the K/IQ/TQ types.
#pragma once

#include <cstdint>

namespace qz::ggml {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32, QK4_NL = 32;
constexpr int QK_MXFP4 = 32;
constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

#define QZ_PACKED __attribute__((packed))

struct QZ_PACKED BlockQ4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };
struct QZ_PACKED BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[QK4_1 / 2]; };
struct QZ_PACKED BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };
struct QZ_PACKED BlockQ5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };
struct QZ_PACKED BlockQ8_0 { uint16_t d; int8_t qs[QK8_0]; };
struct QZ_PACKED BlockQ8_1 { uint16_t d; uint16_t s; int8_t qs[QK8_1]; };

struct QZ_PACKED BlockQ2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d; uint16_t dmin; };
struct QZ_PACKED BlockQ3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct QZ_PACKED BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct QZ_PACKED BlockQ5_K {
    uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2];
};
struct QZ_PACKED BlockQ6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
struct QZ_PACKED BlockQ8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

struct QZ_PACKED BlockIQ4_NL { uint16_t d; uint8_t qs[QK4_NL / 2]; };
struct QZ_PACKED BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; };
struct QZ_PACKED BlockTQ1_0 { uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; uint8_t qh[QK_K / 64]; uint16_t d; };
struct QZ_PACKED BlockTQ2_0 { uint8_t qs[QK_K / 4]; uint16_t d; };
struct QZ_PACKED BlockMXFP4 { uint8_t e; uint8_t qs[QK_MXFP4 / 2]; };

// i-quants (core/ggml/README-iquants.md "Block layouts"); the code books are in ggml/iq_grids.h.
struct QZ_PACKED BlockIQ2_XXS { uint16_t d; uint16_t qs[QK_K / 8]; };
struct QZ_PACKED BlockIQ2_XS { uint16_t d; uint16_t qs[QK_K / 8]; uint8_t scales[QK_K / 32]; };
struct QZ_PACKED BlockIQ2_S {
    uint16_t d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t scales[QK_K / 32];
};
struct QZ_PACKED BlockIQ3_XXS { uint16_t d; uint8_t qs[3 * QK_K / 8]; };
struct QZ_PACKED BlockIQ3_S {
    uint16_t d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t signs[QK_K / 8];
    uint8_t scales[QK_K / 64];
};
struct QZ_PACKED BlockIQ1_S { uint16_t d; uint8_t qs[QK_K / 8]; uint16_t qh[QK_K / 32]; };
struct QZ_PACKED BlockIQ1_M { uint8_t qs[QK_K / 8]; uint8_t qh[QK_K / 16]; uint8_t scales[QK_K / 32]; };

#undef QZ_PACKED

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockTQ1_0) == 54);
static_assert(sizeof(BlockTQ2_0) == 66);
static_assert(sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockIQ2_XXS) == 66);
static_assert(sizeof(BlockIQ2_XS) == 74);
static_assert(sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ3_XXS) == 98);
static_assert(sizeof(BlockIQ3_S) == 110);
static_assert(sizeof(BlockIQ1_S) == 50);
static_assert(sizeof(BlockIQ1_M) == 56);

// Non-linear 4-bit code book of IQ4_NL / IQ4_XS (ggml-common.h kvalues_iq4nl).
inline constexpr int8_t kValuesIQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                             1,    13,   25,  38,  53,  69,  89,  113};
// E2M1 values doubled (MXFP4), scaled by the "half" E8M0 exponent.
inline constexpr int8_t kValuesMXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

}  // namespace qz::ggml

// Internal to the vec-dot code (vec_dot*.cpp): the unpacked weight forms the dot kernels read.
//
// Every supported quantized type is a sum of exact integer products per block, scaled by floats
// (README.md D.3). A weight row is unpacked once into one of two forms, so that one integer kernel
// (scalar or AVX2) serves all types and, in quantizedLinear, the unpacking is shared by all tokens:
//   * UnpackedK (vec-dot type Q8_K, 256 elements): int8 values q, an int16 scale and min per 16
//     elements; block term = (yd·d)·Σ sc_j·Σ q·y − (yd·dmin)·Σ mn_j·bsum_j. The values are stored
//     shifted to unsigned bytes where the type allows (q + offset <= 124), so that the AVX2 kernel
//     multiplies them without sign folding; the shift comes back exactly, in integers, through the
//     activation's sums of 16 (bsum).
//   * UnpackedB32 (Q8_0 / Q8_1, 32 elements): int8 values q; term = (d·yd)·Σ q·y (+ m·ys for Q8_1).
// F32 / F16 / BF16 rows are decoded to floats (exactly) and dotted in float.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/dtype.h"
#include "ggml/block_types.h"

namespace qz::ggml::vecdot {

struct alignas(32) UnpackedK {
    int8_t q[QK_K];        // the values, plus `offset` when offset > 0 (then 0..124: unsigned bytes)
    int16_t sc[QK_K / 16]; // integer scale per 16 values
    int16_t mn[QK_K / 16]; // integer min per 16 values (K types with a min), else 0
    int16_t so[QK_K / 16]; // offset · sc
    float d;
    float dmin;
    int32_t offset; // > 0: subtract offset·Σ sc_j·bsum_j from the integer sum; < 0: q signed
};

struct UnpackedB32 {
    int8_t q[32];
    float d;
    float m;
};

enum class Form { None, Float, B32, K };
Form formOf(DType weightType);
// UnpackedK::offset of a type (-1: signed values); true if the type has mins.
int unpackedOffset(DType t);
bool hasMins(DType t);

// Unpack nb blocks (K / B32) or n elements (Float) of a weight row; avx2: the int8 values of the
// common types with AVX2 (same values).
void unpackK(DType t, const uint8_t* src, UnpackedK* dst, int64_t nb, bool avx2);
void unpackB32(DType t, const uint8_t* src, UnpackedB32* dst, int64_t nb, bool avx2);
void decodeFloats(DType t, const uint8_t* src, float* dst, int64_t n);

// Portable kernels.
float dotKScalar(const UnpackedK* w, const BlockQ8_K* y, int64_t nb);
float dotB32Scalar(const UnpackedB32* w, const uint8_t* y, int64_t nb, bool q81);
float dotF32Scalar(const float* a, const float* b, int64_t n);

// AVX2 kernels (vec_dot_avx2.cpp); only called when haveAvx2(). One weight row against nt <= 4
// activation rows y[0..nt) at once (out[t]); each result is the same, bit for bit, whatever nt.
constexpr int kMaxTokens = 4;
bool haveAvx2();
void dotKAvx2(const UnpackedK* w, const BlockQ8_K* const* y, int nt, int64_t nb, float* out,
              bool signedValues, bool hasMins);
// Two rows at once (out0 for w0, out1 for w1), the same bits as dotKAvx2 per row.
void dotK2Avx2(const UnpackedK* w0, const UnpackedK* w1, const BlockQ8_K* const* y, int nt, int64_t nb,
               float* out0, float* out1, bool signedValues, bool hasMins);
void dotB32Avx2(const UnpackedB32* w, const uint8_t* const* y, int nt, int64_t nb, bool q81, float* out);
void dotB322Avx2(const UnpackedB32* w0, const UnpackedB32* w1, const uint8_t* const* y, int nt, int64_t nb,
                 bool q81, float* out0, float* out1);
// F32 / F16 / BF16 weights as stored (w), activations decoded to floats.
void dotFloatAvx2(DType t, const void* w, const float* const* b, int nt, int64_t n, float* out);
// The int8 values of one block (q: 32 or 256 bytes) for the types where hasQuantsAvx2(t).
bool hasQuantsAvx2(DType t);
void unpackQuantsAvx2(DType t, const uint8_t* block, int8_t* q);
// unpackB32 of those types, with F16C conversions.
void unpackB32Avx2(DType t, const uint8_t* src, UnpackedB32* dst, int64_t nb);
void decodeF16Avx2(const uint16_t* src, float* dst, int64_t n);
// The activation encoders with AVX2, the same bytes as vec_dot.cpp's (ggml-cpu's AVX Q8_0 encoder,
// quantize_row_q8_K_ref): nb blocks of 32 / 256 values.
void encodeQ8_0Avx2(const float* x, uint8_t* dst, int64_t nb);
void encodeQ8KAvx2(const float* x, BlockQ8_K* y, int64_t nb);

// AVX-512 (F, DQ, BW, VL, with the OS's ZMM state; QZ_NO_AVX512=1 turns it off): the float types' kernel
// over 4 weight rows (vec_dot_avx512.cpp), out[r·kMaxTokens + t] = dotFloatAvx2(w[r], b[t]), the same bits.
bool haveAvx512();
void dotFloat4Avx512(DType t, const void* const* w, const float* const* b, int nt, int64_t n, float* out);

// AMX tile kernels (vec_dot_amx.cpp), 16 weight rows × 16 tokens per tile product; only called when
// haveAmx() (CPU with AMX-INT8 and AVX-512, tile state granted by the OS; QZ_NO_AMX=1 turns it off).
// Results are the same bits as the other kernels' (one exact integer per block, the same float
// expression).
bool haveAmx();
// Types with a tile kernel: the B32 types paired with Q8_0 and the K types whose values fit int8 signed.
bool amxSupported(DType weightType);
// Encoded activations (quantizeActivationRow for the weight type, token j at act + j·stride) in the tile
// layout: per group of 16 tokens, element e of token t at byte (e/4·16 + t)·4 + e%4 (missing tokens of
// the last group are zeros); d[(group·nb + block)·16 + t] = the token's block scale.
struct AmxActs {
    std::vector<int8_t> q;
    std::vector<float> d;
    int64_t groups = 0, nb = 0;
    size_t groupBytes = 0;
};
void amxPackActs(DType weightType, const uint8_t* act, size_t stride, int64_t n, int64_t nIn, AmxActs& out);
// Y rows [r0, r0 + 16) for all n tokens of a. False (nothing written) if the tile does not fit the kernel
// (a min outside int8): the caller then uses the other kernels.
bool amxRows16(DType weightType, const uint8_t* W, size_t rowStride, int64_t r0, int64_t nIn, const AmxActs& a,
               int64_t n, float* Y, int64_t ldy);

} // namespace qz::ggml::vecdot

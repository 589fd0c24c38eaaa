// Quantized dot products as llama.cpp's CPU backend computes them (core/ggml/README.md D).
//
// ggml-cpu multiplies a block-quantized weight row by an activation row in two steps: the activation
// row is first converted to the weight type's "vec-dot type" (Q8_0, Q8_1, Q8_K, F16, BF16 or F32;
// the activation loses precision here, exactly as in llama.cpp), then a per-type kernel takes the
// dot product of the two encoded rows. Reproducing the activation rounding byte for byte is what
// makes our perplexity on quantized GGUF files equal to llama-perplexity's; the dot itself differs
// from ggml's only in the order of float additions (the integer part of every block is exact).
//
// Activation encoding follows the ggml-cpu build that llama.cpp would load on the same CPU: with
// AVX (every x86-64 CPU since 2011) Q8_0/Q8_1 use ggml-cpu's AVX rounding, otherwise ggml's reference
// rounding (README.md D.2). Dot kernels: AVX2 (checked at run time; the library is built for
// baseline x86-64) for the common types, portable scalar code for the others.
//
// Layouts: a weight row is the row's bytes as stored in GGUF (n elements, n a multiple of the
// type's block size); an activation row is n elements of vecDotType(weightType) as written by
// quantizeActivationRow. Callers check sizes (vecDotRowBytes returns 0 for a bad n) before calling:
// these functions are kernels and do not validate their pointers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace qz::ggml {

// True if vecDot / quantizedLinear support weight type t: F32, F16, BF16, the legacy types, the
// K types, the i-quants, TQ1_0 / TQ2_0 and MXFP4.
bool vecDotSupported(DType weightType);

// The type activations are converted to for weight type t (ggml-cpu type_traits_cpu.vec_dot_type):
// Q8_0 for Q4_0 Q5_0 Q8_0 IQ4_NL MXFP4; Q8_1 for Q4_1 Q5_1; Q8_K for the K types, i-quants and
// TQ1_0 / TQ2_0; F16 / BF16 / F32 for themselves. The vec-dot types map to themselves (Q8_1 and
// Q8_K included), so vecDotType(vecDotType(t)) == vecDotType(t). DType::Count if unsupported.
DType vecDotType(DType weightType);

// Bytes of an activation row of n elements for weight type t (or for a vec-dot type itself: both
// give the size of n elements of vecDotType(t)). 0 if t is unsupported, n < 0, n is not a
// multiple of the block size, or the size overflows.
size_t vecDotRowBytes(DType type, int64_t n);

// Encodes n floats of x into dst as ggml-cpu's from_float for vdType does (quantize_row_q8_0 /
// q8_1 / q8_K, fp32 -> fp16, fp32 -> bf16, F32 copied), byte for byte. vdType may also be a weight
// type (its vecDotType is used). dst holds vecDotRowBytes(vdType, n) bytes. Returns false (dst
// untouched) if the type is unsupported or n is not a multiple of its block size.
bool quantizeActivationRow(DType vdType, const float* x, void* dst, int64_t n);

// Which of ggml-cpu's two Q8_0/Q8_1 encoders to reproduce (README.md D.2): Avx = the x86 SIMD one
// (d = max/127, scaled by 127/max, round half to even), Reference = quantize_row_q8_*_ref
// (scaled by 1/d, roundf). quantizeActivationRow picks Avx when the CPU has AVX. The other
// vec-dot types have one encoder.
enum class ActivationEncoder { Avx, Reference };
ActivationEncoder defaultActivationEncoder();
bool quantizeActivationRowWith(ActivationEncoder enc, DType vdType, const float* x, void* dst, int64_t n);

// Dot product of a weight row (n elements of weightType) with an activation row encoded by
// quantizeActivationRow for that weight type. 0 (nothing read) if the type is unsupported or n is not
// a positive multiple of the weight's block size.
float vecDot(DType weightType, int64_t n, const void* wRow, const void* actRow);

// The same with the portable scalar kernels whatever the CPU (reference for tests and benchmarks).
float vecDotScalar(DType weightType, int64_t n, const void* wRow, const void* actRow);

// Which kernel vecDot uses for t on this CPU ("avx2" or "scalar"); QZ_NO_AVX2=1 forces scalar.
const char* vecDotKernelName(DType weightType);

// Which kernel quantizedLinear uses for t and n >= 4 tokens on this CPU: "amx" (tiles of 16 rows × 16
// tokens, rows left over with "avx2"), "avx512" (F32 / F16 / BF16, 4 rows at a time), "avx2" or
// "scalar"; QZ_NO_AMX=1 / QZ_NO_AVX512=1 turn the first two off. All give the same bits.
const char* quantizedLinearKernelName(DType weightType);

// Y = W·X from stored weights: Y[i + j·ldy] = vecDot(row i of W, column j of X encoded for W's
// type), for i < nOut, j < n (the same bits). Each weight row is unpacked once (to int8 values and
// integer scales) for all n tokens, so the cost per token falls with n: with 64 tokens it is faster
// than ggml-cpu's vec_dot loop for every type, with 1 token slower for most (tests/bench/bench_vec_dot). W: nOut rows of nIn elements of weightType, row i at W + i·rowStride.
// X column-major [nIn × n] (token j at X + j·nIn). Each token is encoded once; rows are split over
// threads (threads <= 0: defaultThreadCount()). Returns false (Y untouched) if the type is
// unsupported, nIn is not a multiple of its block size or the encoded activations' size overflows.
// Needs a scratch of vecDotRowBytes(weightType, nIn)·n bytes (4·nIn·n for F16 / BF16), plus nIn·n bytes
// for the AMX kernels' tile layout, which the calling thread keeps for its next product.
bool quantizedLinear(DType weightType, const uint8_t* W, size_t rowStride, int64_t nOut, int64_t nIn,
                     const float* X, int64_t n, float* Y, int64_t ldy, int threads);

} // namespace qz::ggml

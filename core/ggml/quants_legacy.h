// Reference quantizers of ggml's legacy block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (README.md B.5)
// and their imatrix-weighted variants (B.6), byte-identical to llama.cpp's quantize_row_*_ref /
// quantize_row_*_impl, plus fp32 -> fp16 / bf16 row conversions (B.8).
//
// Legacy refs: per block of 32, the scale comes from the signed absolute maximum (Q4_0, Q5_0:
// d = max/-8, max/-16), the range (Q4_1, Q5_1: d = (max-min)/15, /31, m = min) or the absolute
// maximum (Q8_0: d = amax/127); codes use id = 1/d of the *unrounded* float d, and d is stored as
// fp16. With an imatrix, each row gets weights w = qw * sqrt(sigma2 + x^2) (sigma2 = mean of x^2
// over the whole row) and make_qx_quants (Q4_0, Q5_0) or make_qkx3_quants (Q4_1, Q5_1) choose the
// scale; Q8_0 ignores the imatrix.
#pragma once

#include <cstdint>

namespace qz::ggml {

// One row (or any run of whole blocks): k values, k a multiple of 32, no imatrix.
void quantizeRowQ4_0Ref(const float* x, uint8_t* dst, int64_t k);
void quantizeRowQ4_1Ref(const float* x, uint8_t* dst, int64_t k);
void quantizeRowQ5_0Ref(const float* x, uint8_t* dst, int64_t k);
void quantizeRowQ5_1Ref(const float* x, uint8_t* dst, int64_t k);
void quantizeRowQ8_0Ref(const float* x, uint8_t* dst, int64_t k);

// Whole rows as ggml's quantize_<type>(src, dst, nrows, n_per_row, imatrix): imatrix == nullptr
// selects the reference path, otherwise it holds ncols weights (one per column) and the weighted
// path runs. ncols must be a multiple of 32. dst receives nrows * ncols/32 blocks.
void quantizeRowsQ4_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ4_1(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ5_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ5_1(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ8_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);

// fp32 -> IEEE half (round to nearest even, as ggml_fp32_to_fp16_row) / bfloat16 (as
// ggml_fp32_to_bf16_row_ref). dst is little-endian 16-bit words.
void convertRowF16(const float* x, uint16_t* dst, int64_t n);
void convertRowBF16(const float* x, uint16_t* dst, int64_t n);

}  // namespace qz::ggml

// i-quant block quantizers (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) and MXFP4,
// byte-identical to ggml's quantize_iq* / quantize_row_mxfp4_ref. The algorithms and every fact they
// rely on are described in core/ggml/README-iquants.md; the code books are in ggml/iq_grids.h.
//
// Same calling convention as ggml/kquants.h: nrows rows of ncols floats (ncols a multiple of 256, or
// 32 for MXFP4), imatrix = one importance weight per column or nullptr. IQ2_XXS, IQ2_XS and IQ1_S need
// an imatrix (ggml asserts on nullptr); here they fall back to all-ones weights instead of crashing,
// and callers must refuse earlier (see iquantRequiresImatrix).
//
// The first call per grid builds its neighbour tables (a fraction of a second, thread-safe); after
// that the functions allocate nothing and keep no state, so rows may be split across threads freely.
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace qz::ggml {

void quantizeRowsIQ2_XXS(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ2_XS(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ2_S(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ3_XXS(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ3_S(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ1_S(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ1_M(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsMXFP4(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);

// ggml_quantize_requires_imatrix: IQ2_XXS, IQ2_XS and IQ1_S cannot be made without an imatrix
// (upstream ggml.c ggml_quantize_requires_imatrix).
bool iquantRequiresImatrix(DType type);

} // namespace qz::ggml

// K-quant block quantizers (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), IQ4_NL and IQ4_XS, byte-identical to ggml.
//
// Each function quantizes `nrows` rows of `ncols` floats (row-major, contiguous) into `nrows` rows of
// blocks written contiguously to dst (row size = ncols/QK * typeSize, see common/dtype.h).
//   imatrix == nullptr -> ggml's `quantize_row_<type>_ref` algorithm (what llama-quantize runs without
//                         --imatrix), README.md B.5;
//   imatrix != nullptr -> ggml's `quantize_row_<type>_impl` per row, README.md B.6. imatrix holds one
//                         importance value per column (ncols floats, the same for every row), i.e.
//                         llama-quantize's `in_sum2/counts` for this tensor (see ggml/imatrix.h).
// IQ4_NL and IQ4_XS always run quantize_row_iq4_nl_impl (ntry = 7, super-block 32 resp. 256), with
// weights x^2 when imatrix is null (README.md B.5, B.7).
//
// Exactness: nearest_int is round-half-even via the 1.5*2^23 trick; d/dmin are stored as fp16 and read
// back before the final codes, where the reference does; every float expression keeps ggml's
// evaluation order (the project builds with -ffp-contract=off). The functions allocate nothing and keep
// no state, so callers may split rows across threads freely (results do not depend on the split).
//
// Preconditions (checked by the caller, e.g. the quantize dispatcher): ncols is a multiple of 256
// (K types, IQ4_XS) or 32 (IQ4_NL); dst has room for nrows full rows.
#pragma once

#include <cstdint>

namespace qz::ggml {

void quantizeRowsQ2_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ3_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ4_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ5_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsQ6_K(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ4_XS(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsIQ4_NL(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);

// The 16 non-linear levels of IQ4_NL (kvalues_iq4nl, README.md B.2).
extern const int8_t kIQ4NLValues[16];
// Index of the level nearest to x, ties to the upper index (ggml's best_index_int8 on kIQ4NLValues).
int iq4nlNearestIndex(float x);
// The same for 8 values at once through the quantizers' vectorised path (AVX2 where the CPU has it).
void iq4nlNearestIndex8(const float* x, int* out);

}  // namespace qz::ggml

// Single entry point for quantizing a whole 2-D tensor (rows x cols, row-major F32) into any ggml
// storage type QuantZoo can produce: F32 / F16 / BF16 (element conversion), the legacy block
// types Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (ggml/quants_legacy.h), the ternary TQ1_0 TQ2_0
// (ggml/quants_ternary.h), the K-quants Q2_K..Q6_K, IQ4_NL, IQ4_XS (ggml/kquants.h, when compiled in) and
// the i-quants IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S plus MXFP4 (ggml/iquants.h).
// Output bytes are identical to ggml_quantize_chunk's
// (README.md B.8): rows are independent, so splitting them across threads changes nothing.
#pragma once

#include <cstdint>

#include "common/dtype.h"
#include "common/result.h"

namespace qz::ggml {

// True if quantizeTensor can produce `type` in this build.
bool canQuantizeTo(DType type);

// Quantizes nrows rows of ncols floats from src into dst, which must hold
// nrows * bytesFor(type, ncols) bytes. imatrix (nullable) holds ncols importance weights, one per
// column (mean squared activation), and selects ggml's imatrix-weighted path where one exists.
// threads <= 0 uses defaultThreadCount(). Fails (without touching dst) on an unsupported type or
// when ncols is not a multiple of the type's block size.
Status quantizeTensor(DType type, const float* src, int64_t nrows, int64_t ncols, const float* imatrix,
                      uint8_t* dst, int threads);

}  // namespace qz::ggml

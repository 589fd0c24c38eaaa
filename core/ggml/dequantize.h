// Dequantization of ggml block types to F32 (README.md B.3).
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace qz::ggml {

// True if dequantizeRow supports t.
bool canDequantize(DType t);
// Dequantizes n elements (a multiple of the block size) from src into dst. Returns false if t is
// not supported.
bool dequantize(DType t, const uint8_t* src, float* dst, int64_t n);

}  // namespace qz::ggml

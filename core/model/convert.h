// Element conversion from stored bytes to F32 for every DType we can read.
#pragma once

#include <cstdint>
#include <span>

#include "common/dtype.h"
#include "common/result.h"

namespace qz {

// Converts n elements of type t starting at src into dst. src must hold bytesFor(t, n) bytes.
// Plain float/int types are handled here; ggml block types are delegated to ggml/dequantize.h.
Status convertToF32(DType t, const uint8_t* src, uint64_t n, float* dst);

bool canConvertToF32(DType t);

}  // namespace qz

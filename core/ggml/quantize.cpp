#include "ggml/quantize.h"

#include <cstring>
#include <string>

#include "common/parallel.h"
#include "ggml/iquants.h"
#include "ggml/quants_legacy.h"
#include "ggml/quants_ternary.h"

#if __has_include("ggml/kquants.h")
#include "ggml/kquants.h"
#define QZ_HAVE_KQUANTS 1
#else
#define QZ_HAVE_KQUANTS 0
#endif

namespace qz::ggml {

namespace {

using RowsFn = void (*)(const float*, uint8_t*, int64_t, int64_t, const float*);

void rowsF32(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    std::memcpy(dst, src, static_cast<size_t>(nrows * ncols) * sizeof(float));
}
void rowsF16(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    convertRowF16(src, reinterpret_cast<uint16_t*>(dst), nrows * ncols);
}
void rowsBF16(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    convertRowBF16(src, reinterpret_cast<uint16_t*>(dst), nrows * ncols);
}

RowsFn rowsFunction(DType type) {
    switch (type) {
    case DType::F32: return rowsF32;
    case DType::F16: return rowsF16;
    case DType::BF16: return rowsBF16;
    case DType::Q4_0: return quantizeRowsQ4_0;
    case DType::Q4_1: return quantizeRowsQ4_1;
    case DType::Q5_0: return quantizeRowsQ5_0;
    case DType::Q5_1: return quantizeRowsQ5_1;
    case DType::Q8_0: return quantizeRowsQ8_0;
    case DType::TQ1_0: return quantizeRowsTQ1_0;
    case DType::TQ2_0: return quantizeRowsTQ2_0;
    case DType::IQ2_XXS: return quantizeRowsIQ2_XXS;
    case DType::IQ2_XS: return quantizeRowsIQ2_XS;
    case DType::IQ2_S: return quantizeRowsIQ2_S;
    case DType::IQ3_XXS: return quantizeRowsIQ3_XXS;
    case DType::IQ3_S: return quantizeRowsIQ3_S;
    case DType::IQ1_S: return quantizeRowsIQ1_S;
    case DType::IQ1_M: return quantizeRowsIQ1_M;
    case DType::MXFP4: return quantizeRowsMXFP4;
#if QZ_HAVE_KQUANTS
    case DType::Q2_K: return quantizeRowsQ2_K;
    case DType::Q3_K: return quantizeRowsQ3_K;
    case DType::Q4_K: return quantizeRowsQ4_K;
    case DType::Q5_K: return quantizeRowsQ5_K;
    case DType::Q6_K: return quantizeRowsQ6_K;
    case DType::IQ4_NL: return quantizeRowsIQ4_NL;
    case DType::IQ4_XS: return quantizeRowsIQ4_XS;
#endif
    default: return nullptr;
    }
}

}  // namespace

bool canQuantizeTo(DType type) { return rowsFunction(type) != nullptr; }

Status quantizeTensor(DType type, const float* src, int64_t nrows, int64_t ncols, const float* imatrix,
                      uint8_t* dst, int threads) {
    const RowsFn fn = rowsFunction(type);
    const auto& tr = traits(type);
    if (!fn) return makeError("quantizing to " + std::string(tr.name) + " is not supported");
    if (nrows < 0 || ncols < 0) return makeError("negative tensor dimensions");
    if (!imatrix && iquantRequiresImatrix(type))
        return makeError("quantizing to " + std::string(tr.name) + " needs an importance matrix (as ggml requires)");
    if (ncols % tr.blockSize != 0)
        return makeError("cannot quantize to " + std::string(tr.name) + ": row length " + std::to_string(ncols) +
                         " is not a multiple of " + std::to_string(tr.blockSize));
    if (nrows == 0 || ncols == 0) return okStatus();
    const auto rowBytes = bytesFor(type, static_cast<uint64_t>(ncols));
    if (!rowBytes) return makeError("tensor too large");
    // At least ~64K elements per chunk so small tensors stay on one thread.
    const size_t minRows = static_cast<size_t>(std::max<int64_t>(1, 65536 / ncols));
    parallelFor(static_cast<size_t>(nrows), [&](size_t r0, size_t r1, int) {
        fn(src + static_cast<int64_t>(r0) * ncols, dst + r0 * *rowBytes, static_cast<int64_t>(r1 - r0), ncols,
           imatrix);
    }, threads, minRows);
    return okStatus();
}

}  // namespace qz::ggml

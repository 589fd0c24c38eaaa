#include "ggml/quantize.h"

#include <algorithm>
#include <atomic>
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
    // Rows go in chunks of >= 16384 elements, taken from a shared counter by each thread as it becomes free
    // (as llama.cpp's llama_tensor_quantize_impl does), so a slow thread (a loaded machine, costlier rows)
    // does not hold up the others; tensors under 64K elements stay on one thread.
    const int64_t chunkRows = std::max<int64_t>(1, (16384 + ncols - 1) / ncols);
    const int64_t nchunks = (nrows + chunkRows - 1) / chunkRows;
    int64_t nt = threads > 0 ? threads : defaultThreadCount();
    if (nrows <= 65535 / ncols) nt = 1; // fewer than 65536 elements (no product that could overflow)
    nt = std::min(nt, nchunks);
    if (nt <= 1) {
        fn(src, dst, nrows, ncols, imatrix);
        return okStatus();
    }
    std::atomic<int64_t> next{0};
    parallelFor(
        static_cast<size_t>(nt),
        [&](size_t, size_t, int) {
            for (;;) {
                const int64_t r0 = next.fetch_add(chunkRows);
                if (r0 >= nrows) return;
                const int64_t n = std::min(chunkRows, nrows - r0);
                fn(src + r0 * ncols, dst + static_cast<size_t>(r0) * *rowBytes, n, ncols, imatrix);
            }
        },
        static_cast<int>(nt), 1);
    return okStatus();
}

}  // namespace qz::ggml

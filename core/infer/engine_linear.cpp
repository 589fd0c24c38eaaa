// The engine's linear layers from the weights as stored (see engine_impl.h storedLinear).
#include <algorithm>
#include <cstring>

#include "common/fp16.h"
#include "common/parallel.h"
#include "ggml/dequantize.h"
#include "ggml/vec_dot.h"
#include "infer/engine_impl.h"
#include "infer/matmul.h"

namespace qz {

bool storedTypeSupported(DType t) {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16 ||
           (traits(t).isQuantized && ggml::canDequantize(t));
}

void StoredMatrix::readRow(int64_t r, float* dst) const {
    if (source) {
        source->decodeRows(r, r + 1, dst);
        return;
    }
    if (!owned.empty()) {
        std::copy_n(owned.data() + r * cols, cols, dst);
        return;
    }
    const uint8_t* src = view + static_cast<size_t>(r) * rowStride;
    switch (type) { // types checked at load (storedTypeSupported)
    case DType::F32:
        std::memcpy(dst, src, static_cast<size_t>(cols) * 4);
        break;
    case DType::F16:
        for (int64_t i = 0; i < cols; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            dst[i] = fp16ToFp32(h);
        }
        break;
    case DType::BF16:
        for (int64_t i = 0; i < cols; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            dst[i] = bf16ToFp32(h);
        }
        break;
    default:
        ggml::dequantize(type, src, dst, cols);
        break;
    }
}

namespace {

// Rows widened to F32 per thread at a time (engine memory: 64 rows of the widest input per thread,
// jobs/memory_estimate.cpp "weight tiles").
constexpr int64_t kPanelRows = 64;

// Y (stored row order, leading dimension ldy) = W·X with F32 activations.
void floatLinear(const StoredMatrix& W, const float* X, int64_t n, float* Y, int64_t ldy, int threads) {
    const int64_t nOut = W.rows, nIn = W.cols;
    if (W.isOwned() && !W.source) {
        linearForward(W.owned.data(), nOut, nIn, X, n, Y, ldy, threads);
        return;
    }
    if (!W.source && W.type == DType::F32 && reinterpret_cast<uintptr_t>(W.view) % alignof(float) == 0 &&
        W.rowStride == static_cast<size_t>(nIn) * 4) {
        linearForward(reinterpret_cast<const float*>(W.view), nOut, nIn, X, n, Y, ldy, threads);
        return;
    }
    const size_t panels = static_cast<size_t>((nOut + kPanelRows - 1) / kPanelRows);
    const double work = static_cast<double>(nOut) * nIn * n;
    parallelFor(
        panels,
        [&](size_t p0, size_t p1, int) {
            thread_local std::vector<float> buf;
            if (buf.size() < static_cast<size_t>(kPanelRows * nIn))
                buf.resize(static_cast<size_t>(kPanelRows * nIn));
            for (size_t p = p0; p < p1; ++p) {
                const int64_t r0 = static_cast<int64_t>(p) * kPanelRows;
                const int64_t nr = std::min(kPanelRows, nOut - r0);
                if (W.source)
                    W.source->decodeRows(r0, r0 + nr, buf.data());
                else
                    for (int64_t r = 0; r < nr; ++r)
                        W.readRow(r0 + r, buf.data() + r * nIn);
                linearForward(buf.data(), nr, nIn, X, n, Y + r0, ldy, 1);
            }
        },
        work < 200000 ? 1 : threads);
}

// Y (stored row order) = W·X in the mode chosen by the caller.
void linearStoredOrder(const StoredMatrix& W, const float* X, int64_t n, float* Y, int64_t ldy, int threads,
                       bool ggmlActivations) {
    if (ggmlActivations && !W.isOwned() && !W.source && W.type != DType::F32 &&
        ggml::vecDotSupported(W.type) &&
        ggml::quantizedLinear(W.type, W.view, W.rowStride, W.rows, W.cols, X, n, Y, ldy, threads))
        return;
    floatLinear(W, X, n, Y, ldy, threads);
}

} // namespace

void storedLinear(const StoredMatrix& W, const std::vector<int32_t>& rowOrder, const float* X, int64_t n,
                  float* Y, int64_t ldy, int threads, bool ggmlActivations) {
    if (rowOrder.empty()) {
        linearStoredOrder(W, X, n, Y, ldy, threads, ggmlActivations);
        return;
    }
    const int64_t nOut = W.rows;
    std::vector<float> tmp(static_cast<size_t>(nOut * n));
    linearStoredOrder(W, X, n, tmp.data(), nOut, threads, ggmlActivations);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < nOut; ++i)
            Y[i + t * ldy] = tmp[static_cast<size_t>(rowOrder[i] + t * nOut)];
}

} // namespace qz

#include "quant/llm_int8.h"

#include <algorithm>
#include <cmath>

#include "common/fp16.h"
#include "common/parallel.h"

namespace qz {

namespace {
bool endsWith(const std::string& s, const char* suffix) {
    const std::string t(suffix);
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
}  // namespace

bool weightInputIsRows(const std::string& name) {
    // GGUF names (blk.N.*) are never Conv1D; HF GPT-2 names are "[transformer.]h.N.attn.c_attn.weight" ...
    if (name.rfind("blk.", 0) == 0) return false;
    return endsWith(name, ".attn.c_attn.weight") || endsWith(name, ".attn.c_proj.weight") ||
           endsWith(name, ".mlp.c_fc.weight") || endsWith(name, ".mlp.c_proj.weight");
}

std::vector<int32_t> findOutlierFeatures(std::span<const float> maxAbs, float threshold) {
    std::vector<int32_t> out;
    for (size_t j = 0; j < maxAbs.size(); ++j)
        if (maxAbs[j] >= threshold) out.push_back(static_cast<int32_t>(j));
    return out;
}

LlmInt8Bytes llmInt8Bytes(int64_t nOut, int64_t nIn, int64_t nOutliers) {
    LlmInt8Bytes b;
    if (nOut <= 0 || nIn <= 0) return b;
    const auto out = static_cast<uint64_t>(nOut);
    const auto k = static_cast<uint64_t>(std::clamp<int64_t>(nOutliers, 0, nIn));
    b.int8Bytes = (static_cast<uint64_t>(nIn) - k) * out;
    b.scaleBytes = 4 * out;
    b.outlierBytes = 2 * k * out;
    b.indexBytes = 4 * k;
    return b;
}

std::vector<float> llmInt8RowMax(const float* w, int64_t rows, int64_t cols, bool inputIsRows,
                                 std::span<const int32_t> outlierFeatures) {
    if (rows <= 0 || cols <= 0) return {};
    const int64_t nOut = inputIsRows ? cols : rows, nIn = inputIsRows ? rows : cols;
    std::vector<uint8_t> isOutlier(static_cast<size_t>(nIn), 0);
    for (int32_t j : outlierFeatures)
        if (j >= 0 && j < nIn) isOutlier[static_cast<size_t>(j)] = 1;
    std::vector<float> rowmax(static_cast<size_t>(nOut), 0.0f);
    // Walk the stored rows in memory order (for Conv1D a stored row is one input feature).
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = w + r * cols;
        if (inputIsRows) {
            if (isOutlier[r]) continue;
            for (int64_t o = 0; o < cols; ++o) rowmax[o] = std::max(rowmax[o], std::fabs(row[o]));
        } else {
            for (int64_t i = 0; i < cols; ++i)
                if (!isOutlier[i]) rowmax[r] = std::max(rowmax[r], std::fabs(row[i]));
        }
    }
    return rowmax;
}

void llmInt8QuantizeDequantize(const float* w, int64_t rows, int64_t cols, bool inputIsRows,
                               std::span<const int32_t> outlierFeatures, float* out, int8_t* codes) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t nOut = inputIsRows ? cols : rows, nIn = inputIsRows ? rows : cols;
    std::vector<uint8_t> isOutlier(static_cast<size_t>(nIn), 0);
    for (int32_t j : outlierFeatures)
        if (j >= 0 && j < nIn) isOutlier[static_cast<size_t>(j)] = 1;
    // Element (o, i) of W [out × in] in the stored layout.
    auto at = [&](int64_t o, int64_t i) -> int64_t { return inputIsRows ? i * cols + o : o * cols + i; };
    const float inv127 = 1.0f / 127.0f;  // 7.874015718698502e-3 in float
    // Conv1D rows are strided; each output feature writes only its own elements, so parallel rows are safe.
    parallelFor(static_cast<size_t>(nOut), [&](size_t o0, size_t o1, int) {
        for (int64_t o = static_cast<int64_t>(o0); o < static_cast<int64_t>(o1); ++o) {
            float rowmax = 0;
            for (int64_t i = 0; i < nIn; ++i)
                if (!isOutlier[i]) rowmax = std::max(rowmax, std::fabs(w[at(o, i)]));
            const float s = rowmax > 0 ? 127.0f / rowmax : 0.0f;
            for (int64_t i = 0; i < nIn; ++i) {
                const int64_t e = at(o, i);
                if (isOutlier[i]) {
                    out[e] = fp16ToFp32(fp32ToFp16(w[e]));
                    if (codes) codes[e] = 0;
                    continue;
                }
                const float qf = std::nearbyint(w[e] * s);
                const auto q = static_cast<int32_t>(std::clamp(std::isfinite(qf) ? qf : 0.0f, -127.0f, 127.0f));
                if (codes) codes[e] = static_cast<int8_t>(q);
                out[e] = static_cast<float>(q) * rowmax * inv127;
            }
        }
    }, 0, std::max<size_t>(1, static_cast<size_t>((1 << 15) / std::max<int64_t>(1, nIn))));
}

std::vector<int32_t> llmInt8QuantizeActivations(float* x, int64_t nTokens, int64_t nIn, float threshold) {
    std::vector<int32_t> cols;
    if (!x || nTokens <= 0 || nIn <= 0) return cols;
    const int64_t n = nTokens * nIn;
    for (int64_t i = 0; i < n; ++i) x[i] = fp16ToFp32(fp32ToFp16(x[i]));
    std::vector<uint8_t> isOutlier(static_cast<size_t>(nIn), 0);
    const bool split = threshold > 0;
    if (split) {
        for (int64_t t = 0; t < nTokens; ++t)
            for (int64_t j = 0; j < nIn; ++j)
                if (std::fabs(x[t * nIn + j]) >= threshold) isOutlier[j] = 1;
        for (int64_t j = 0; j < nIn; ++j)
            if (isOutlier[j]) cols.push_back(static_cast<int32_t>(j));
    }
    const float inv127 = 1.0f / 127.0f;
    for (int64_t t = 0; t < nTokens; ++t) {
        float* row = x + t * nIn;
        float rs = 0;
        for (int64_t j = 0; j < nIn; ++j) {
            const float a = std::fabs(row[j]);
            if (!split || a < threshold) rs = std::max(rs, a);
        }
        const float s = rs > 0 ? 127.0f / rs : 0.0f;
        for (int64_t j = 0; j < nIn; ++j) {
            if (isOutlier[j]) continue;  // multiplied in 16 bits
            const float qf = std::nearbyint(row[j] * s);
            const float q = std::clamp(std::isfinite(qf) ? qf : 0.0f, -127.0f, 127.0f);
            row[j] = q * rs * inv127;
        }
    }
    return cols;
}

}  // namespace qz

#include "calib/stats.h"

#include <cmath>

namespace qz::calib {

bool ColumnSquares::add(const float* x, int64_t nTokens, int64_t nIn) {
    if (nIn <= 0) return false;
    if (sum2.empty()) sum2.assign(static_cast<size_t>(nIn), 0.0);
    if (static_cast<int64_t>(sum2.size()) != nIn) return false;
    double* s = sum2.data();
    for (int64_t t = 0; t < nTokens; ++t) {
        const float* row = x + t * nIn;
        for (int64_t j = 0; j < nIn; ++j) s[j] += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    }
    count += nTokens;
    return true;
}

bool ColumnMaxAbs::add(const float* x, int64_t nTokens, int64_t width) {
    if (width <= 0) return false;
    if (maxAbs.empty()) {
        nIn = width;
        maxAbs.assign(static_cast<size_t>(width), 0.0f);
    }
    if (nIn != width) return false;
    for (int64_t t = 0; t < nTokens; ++t) {
        const float* row = x + t * nIn;
        for (int64_t j = 0; j < nIn; ++j) {
            const float v = std::fabs(row[j]);
            if (v > maxAbs[j]) maxAbs[j] = v; // NaN never wins
        }
    }
    tokens += nTokens;
    return true;
}

}  // namespace qz::calib

// Per-input-column activation statistics of a linear layer, accumulated from the inputs an engine
// observer reports (infer/engine.h LinearObserver: x row-major [nTokens × nIn]):
//   ColumnSquares — Σ_t x_t[j]² and the token count, llama-imatrix's in_sum2 / counts (calib/imatrix.h).
//     Sums in double (llama-imatrix uses float), added token by token in call order.
//   ColumnMaxAbs  — max_t |x_t[j]|, LLM.int8()'s outlier features (jobs/calibration.h). NaN never wins.
// Both refuse a call whose width differs from the first one (add returns false, nothing is added).
#pragma once

#include <cstdint>
#include <vector>

namespace qz::calib {

struct ColumnSquares {
    std::vector<double> sum2; // per input column (experts: expert e's columns at e·nIn)
    int64_t count = 0;        // tokens seen (experts: routed token-expert pairs over all experts)
    std::vector<int64_t> expertCounts; // experts (calib/imatrix.h): tokens routed to each; empty for 2-D
    bool add(const float* x, int64_t nTokens, int64_t nIn);
};

struct ColumnMaxAbs {
    int64_t nIn = 0;
    std::vector<float> maxAbs; // [nIn]
    int64_t tokens = 0;        // tokens seen
    bool add(const float* x, int64_t nTokens, int64_t nIn);
};

}  // namespace qz::calib

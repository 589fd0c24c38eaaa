// Before / after view of one weight: the original values and a result's (e.g. a GPTQ / EXL2
// export's dequantized weights) as histograms over one shared range, plus the error figures.
// The range is the 0.1 % .. 99.9 % percentiles of both sets together (stats/robust_range.h), so a few
// large weights do not squeeze the bulk into one bar; the values beyond it are in below / above.
#pragma once

#include <span>
#include <string>

#include "common/result.h"
#include "model/model.h"
#include "stats/histogram.h"

namespace qz {

struct LayerHistograms {
    Histogram original, result;
    ErrorStats stats;  // of result against original
};

// Fails naming the tensor when it is not in the model, cannot be read as F32, or has another number of
// values than `result`; bins must be 1..100000.
Result<LayerHistograms> computeLayerHistograms(const Model& model, const std::string& name,
                                               std::span<const float> result, int bins);

}  // namespace qz

// The model-wide histogram of the original weights (all selected tensors together, as the first
// notebook plots them), streamed tensor by tensor: memory is one tensor's F32 values at most (16-bit
// tensors are counted straight from the mapped bytes), so it runs on a 70B model as on a small one.
// Robust range: a first pass builds a value sketch (stats/robust_range.h), the second counts into the
// chosen range; a fixed range needs the second pass only. Progress is reported per tensor and per
// pass (the sketch pass weighs a tenth of the counting pass), and a cancel is seen between tensors.
#pragma once

#include <cstdint>

#include "common/progress.h"
#include "common/result.h"
#include "jobs/quantize_job.h"
#include "model/model.h"
#include "stats/histogram.h"

namespace qz {

struct ModelHistogramParams {
    TensorFilter filter;   // default: all 2-D weights
    HistogramSpec spec;    // bins and range mode
};

struct ModelHistogramResult {
    Histogram histogram;       // below / above count the values beyond a robust or fixed range
    uint64_t tensors = 0;      // tensors counted
    uint64_t values = 0;       // values counted (finite or not)
    double seconds = 0;
};

Result<ModelHistogramResult> computeModelHistogram(const Model& model, const ModelHistogramParams& params,
                                                   ProgressFn progress = {});

}  // namespace qz

// The fake-quantized weights of a finished quantize job as engine weight overrides (what the main
// window's "fake-quantized" model is when it is evaluated or generated with): each of the result's
// tensors re-quantized with the result's spec.
#pragma once

#include "common/progress.h"
#include "common/result.h"
#include "infer/engine.h"
#include "jobs/quantize_job.h"

namespace qz {

// Progress: one unit per tensor; cancellable (returns cancelledError()).
Result<WeightOverrides> overridesFromQuantizeResult(const Model& model, const QuantizeResult& result,
                                                    const ProgressFn& progress);

}  // namespace qz

#include "jobs/quantize_overrides.h"

#include <algorithm>

namespace qz {

Result<WeightOverrides> overridesFromQuantizeResult(const Model& model, const QuantizeResult& result,
                                                    const ProgressFn& progress) {
    WeightOverrides out;
    const size_t n = result.tensors.size();
    for (size_t i = 0; i < n; ++i) {
        const auto& t = result.tensors[i];
        if (progress && !progress({double(i) / double(std::max<size_t>(1, n)), "re-quantizing " + t.name}))
            return cancelledError();
        std::vector<float> deq;
        auto r = analyzeTensor(model, t.tensorIndex, result.spec, 16, &deq);
        if (!r) return r.error();
        out[t.name] = std::move(deq);
    }
    if (progress && !progress({1.0, "re-quantized"})) return cancelledError();
    return out;
}

}  // namespace qz

#include "jobs/layer_histograms.h"

#include <vector>

#include "stats/robust_range.h"

namespace qz {

Result<LayerHistograms> computeLayerHistograms(const Model& model, const std::string& name,
                                               std::span<const float> result, int bins) {
    if (bins < 1 || bins > 100000) return makeError("histogram needs 1..100000 bins");
    const TensorInfo* t = model.find(name);
    if (!t) return makeError(name + " is not in " + model.path);
    auto w = readTensorF32(model, *t);
    if (!w) return Error{model.path + ": " + name + ": " + w.error().message, false};
    if (w->size() != result.size())
        return makeError(model.path + ": " + name + ": " + std::to_string(w->size()) +
                         " values in the model, " + std::to_string(result.size()) + " in the result");
    ValueSketch sketch;
    sketch.add(w->data(), w->size());
    sketch.add(result.data(), result.size());
    const ValueRange r = robustRange(sketch);
    LayerHistograms h;
    h.original = histogramF32(w->data(), w->size(), bins, r.lo, r.hi);
    h.result = histogramF32(result.data(), result.size(), bins, r.lo, r.hi);
    h.stats = errorStats(w->data(), result.data(), w->size());
    return h;
}

}  // namespace qz

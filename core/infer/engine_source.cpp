// Engine::setWeightSource: a 2-D weight decoded row by row on demand (infer/weight_source.h).
#include <cmath>

#include "infer/engine_impl.h"

namespace qz {

Status Engine::setWeightSource(const std::string& name, std::shared_ptr<const WeightRowSource> source) {
    auto it = m_impl->slots.find(name);
    if (it == m_impl->slots.end())
        return makeError("setWeightSource: the engine holds no tensor named " + name);
    const InferWeightSlot& slot = it->second;
    if (!source) return makeError("setWeightSource: no source for " + name);
    if (slot.shape.size() != 2 || !slot.experts.empty())
        return makeError("setWeightSource: " + name +
                         " is not a 2-D tensor (give its values as an override)");
    if (source->rows() != slot.shape[0] || source->cols() != slot.shape[1])
        return makeError("setWeightSource: the source of " + name + " has " + std::to_string(source->rows()) +
                         " × " + std::to_string(source->cols()) + " values, the tensor " +
                         std::to_string(slot.shape[0]) + " × " + std::to_string(slot.shape[1]));
    if (!slot.matrix || slot.conv1d) {
        // Held as F32 anyway (GPT-2's learned positions, its HF Conv1D weights kept transposed): the
        // source's values become the held copy, as an override's would.
        std::vector<float> v;
        try {
            v.resize(static_cast<size_t>(source->rows() * source->cols()));
        } catch (const std::bad_alloc&) {
            return makeError("setWeightSource: out of memory for " + name);
        }
        source->decodeRows(0, source->rows(), v.data());
        for (float x : v)
            if (!std::isfinite(x)) return makeError("setWeightSource: " + name + " contains NaN or Inf");
        assignWeight(slot, std::move(v));
        m_impl->nCached = 0;
        return okStatus();
    }
    StoredMatrix& M = *slot.matrix;
    std::vector<float>().swap(M.owned);
    M.source = std::move(source);
    m_impl->nCached = 0;
    return okStatus();
}

} // namespace qz

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
    const bool transposed = source->transposed();
    if (transposed && !slot.conv1d)
        return makeError("setWeightSource: the source of " + name +
                         " gives rows of its transpose, which only a Conv1D weight takes");
    const int64_t rows = transposed ? slot.shape[1] : slot.shape[0],
                  cols = transposed ? slot.shape[0] : slot.shape[1];
    if (source->rows() != rows || source->cols() != cols)
        return makeError("setWeightSource: the source of " + name + " has " + std::to_string(source->rows()) +
                         " × " + std::to_string(source->cols()) + " values, the tensor " +
                         std::to_string(rows) + " × " + std::to_string(cols) +
                         (transposed ? " (transposed)" : ""));
    if (!slot.matrix || (slot.conv1d && !transposed)) {
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
    // Rows of [out, in] (a Conv1D weight's transposed source included): the engine's matrix layout.
    StoredMatrix& M = *slot.matrix;
    std::vector<float>().swap(M.owned);
    M.source = std::move(source);
    m_impl->nCached = 0;
    return okStatus();
}

} // namespace qz

// Weights made row by row on demand: a tensor the engine computes with is given as a source that
// decodes rows [r0, r1) into F32 (e.g. a variant's codes and scales, or its quantized file), instead of
// an F32 copy of the whole tensor (an override). The engine widens one panel of rows per thread at a
// time (infer/engine_linear.cpp), so a model evaluated from sources costs what the sources hold, not
// 4 bytes per weight.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

namespace qz {

class WeightRowSource {
  public:
    virtual ~WeightRowSource() = default;
    // The tensor's shape as the model stores it: rows() × cols() (rows = the outer dimensions).
    virtual int64_t rows() const = 0;
    virtual int64_t cols() const = 0;
    // Rows [r0, r1) of the tensor in its own layout (row-major, exactly the values an override of the
    // tensor would hold there) into dst, (r1 − r0) · cols() values. Called from several threads at once.
    // A transposed source gives rows of the tensor's transpose instead.
    virtual void decodeRows(int64_t r0, int64_t r1, float* dst) const = 0;
    // True: the rows are those of the transpose of the tensor as the model stores it (rows() × cols() is
    // the stored shape swapped). For GPT-2's HF Conv1D weights, stored [in, out]: their rows of [out, in]
    // are what the engine multiplies with, so it runs them from the source instead of an F32 transpose.
    virtual bool transposed() const { return false; }
    // Bytes the source holds in memory (not counting mapped files).
    virtual uint64_t residentBytes() const { return 0; }
};

// Tensor name (as the model names it) -> source.
using WeightSources = std::unordered_map<std::string, std::shared_ptr<const WeightRowSource>>;

} // namespace qz

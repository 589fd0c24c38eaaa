// One tensor under several ggml storage types side by side: each type's dequantized histogram (on
// shared bins), error figures and size. Used by the export panel's "compare types" view, so a user
// sees what Q4_K or Q6_K does to a weight matrix before writing a whole file.
//
// The tensor is taken in its GGUF layout (rows of ne[0] values, as llama.cpp quantizes it): for a
// HF model this is the converted tensor (GPT-2 Conv1D weights transposed; Q/K permutation only
// reorders rows, which changes no figure), for a GGUF model its own values.
#pragma once

#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/progress.h"
#include "common/result.h"
#include "model/model.h"
#include "stats/histogram.h"

namespace qz {

struct TypeVariant {
    DType type = DType::F32;
    bool supported = true;     // false: the row length does not fit the type's block
    uint64_t bytes = 0;
    double bitsPerWeight = 0;
    ErrorStats error;
    Histogram histogram;       // dequantized values, on the shared bins
};

struct TypeComparison {
    std::string tensor;
    std::vector<int64_t> ne;   // GGUF order
    Histogram original;        // shared bins over the original's [min, max]
    std::vector<TypeVariant> variants;
};

// Quantizes `values` (rows × cols, row-major, rows of cols values) to each type and back.
// imatrix (nullable, cols entries) selects the importance-weighted quantizers.
TypeComparison compareTypes(const std::vector<float>& values, int64_t rows, int64_t cols,
                            const std::vector<DType>& types, int bins, const float* imatrix = nullptr,
                            const ProgressFn& progress = {});

// The same for a tensor of a model, by its name in the model file (HF or GGUF name).
Result<TypeComparison> compareTensorTypes(const Model& model, const std::string& tensorName,
                                          const std::vector<DType>& types, int bins,
                                          const ProgressFn& progress = {});

}  // namespace qz

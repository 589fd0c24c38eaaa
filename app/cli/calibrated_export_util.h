// What the GPTQ and EXL2 export commands share: writing the dequantized weights for an independent
// reader (--dump-dequant) and the perplexity of the original against the exported variants (--eval).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "infer/engine.h"
#include "model/model.h"

namespace qzcli {

// The quantized 2-D weights of `ov`, in model order, as F32 safetensors at `path`.
qz::Status dumpDequant(const std::string& path, const qz::WeightOverrides& ov, const qz::Model& model);

struct EvalVariant {
    std::string label;                       // "original", "gptq", "rtn", "exl2"
    const qz::WeightOverrides* overrides;    // nullptr: the original weights
    // Instead of overrides: the weights of one decoder block at a time (e.g. read back from the written
    // checkpoint); the perplexity then runs one block at a time (calib/layered.h perplexityLayered, the same
    // figures) and holds one block's weights, not the model's.
    std::function<qz::Result<qz::WeightOverrides>(int block)> blockWeights = {};
};

// Tokenizes evalPath as llama-perplexity does and prints "perplexity LABEL (ctx C, N chunks): …" for each
// variant (progress line on stderr unless quiet). maxStateMemory: the layered variants' hidden states go to
// a temporary file beyond it (0: no limit). Returns an exit code (commands.h).
int printPerplexities(const qz::Model& model, const std::string& evalPath, int ctx, int chunks, int threads,
                      bool quiet, const std::vector<EvalVariant>& variants, uint64_t maxStateMemory = 0);

}  // namespace qzcli

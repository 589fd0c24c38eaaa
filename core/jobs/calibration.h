// Activation statistics for calibration-based methods (LLM.int8()'s outlier features): a calibration
// text is tokenized with the model's tokenizer (as for perplexity, infer/text_tokens.h), cut into
// consecutive chunks of nCtx tokens (at most nChunks; a text shorter than nCtx gives one shorter
// chunk), and each chunk is evaluated with our engine (infer/engine.h) one decoder block at a time over
// all chunks (calib/layered.h; F32 carried states: the same inputs as evaluating each chunk from an
// empty KV cache). For
// every linear layer (the LM head included; a tied head is reported under the embedding's name) the
// LinearObserver hands us the layer's input activations; we keep, per input feature j,
// maxAbs[j] = max over all calibration tokens of |x_t[j]|. When the vocabulary adds BOS, each chunk's
// first token is BOS (as llama-perplexity evaluates chunks).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "calib/states.h"
#include "calib/stats.h"
#include "common/progress.h"
#include "common/result.h"
#include "model/model.h"

namespace qz {

struct CalibrationParams {
    int nCtx = 512;      // tokens per chunk (clamped to the model's context)
    int nChunks = 16;    // at most this many chunks (> 0)
    int threads = 0;     // 0 = all cores
    // The chunks' carried hidden states (calib/states.h): F32 is exact; above maxStateMemory bytes
    // (0: no limit) they go to a temporary file in the system's temporary folder.
    calib::StateType stateType = calib::StateType::F32;
    uint64_t maxStateMemory = 0;
};

// nIn, maxAbs [nIn], tokens seen (the LM head sees every token too: logits of all positions).
using ActivationMaxima = calib::ColumnMaxAbs;

struct CalibrationStats {
    std::map<std::string, ActivationMaxima> layers;  // by the model's weight tensor name
    int64_t tokens = 0;
    int nChunks = 0;
    int nCtx = 0;
};

// Progress: engine load 0..20 %, chunks 20..100 %. Cancellable.
Result<CalibrationStats> collectActivationMaxima(const Model& model, std::string_view text,
                                                 const CalibrationParams& params, const ProgressFn& progress = {});

// Reads a calibration text file (UTF-8), at most maxBytes (error if larger or unreadable).
Result<std::string> readCalibrationText(const std::string& path, uint64_t maxBytes = 256ull << 20);

}  // namespace qz

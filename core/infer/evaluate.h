// One-call evaluation of a model (optionally with overridden = fake-quantized weights) on a text:
// perplexity as llama-perplexity (-c nCtx --chunks nChunks), and KL-divergence against a base run.
// Loads an Engine (progress 0 .. 10 %), tokenizes the text with the model's tokenizer
// (infer/text_tokens.h), then runs computePerplexity / computeKlDivergence (10 .. 100 %).
#pragma once

#include <string_view>

#include "common/progress.h"
#include "common/result.h"
#include "infer/engine.h"
#include "infer/perplexity.h"
#include "model/model.h"

namespace qz {

struct EvalParams {
    int nCtx = 512;              // -c
    int nChunks = -1;            // --chunks (-1 = all)
    int threads = 0;             // 0 = defaultThreadCount()
    bool forceBos = false;       // BOS even if the vocabulary does not add it (see text_tokens.h)
    bool llamaCppEmulation = true;  // EngineOptions::kvF16 and ggmlGelu; off also turns ggmlActivations off
};

// baseOut (optional) receives the stored log-probabilities for a later KL-divergence run. sources
// (optional) replace tensors as Engine::setWeightSource does.
Result<PerplexityResult> evaluatePerplexity(const Model& model, std::string_view text,
                                            const EvalParams& params, ProgressFn progress = {},
                                            const WeightOverrides* overrides = nullptr,
                                            KldBase* baseOut = nullptr,
                                            const WeightSources* sources = nullptr);

// KL-divergence of model (+ overrides) against `base` (made by evaluatePerplexity on the base model with
// the same text and nCtx). The model must share the base's vocabulary.
Result<KldResult> evaluateKlDivergence(const Model& model, const KldBase& base, const EvalParams& params,
                                       ProgressFn progress = {}, const WeightOverrides* overrides = nullptr,
                                       const WeightSources* sources = nullptr);

}  // namespace qz

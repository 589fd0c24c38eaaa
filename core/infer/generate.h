// Text generation with the CPU engine: greedy or sampled, streaming, cancellable, deterministic.
//
// The prompt is tokenized with the model's tokenizer (BOS prepended when the vocabulary adds it, as
// llama.cpp and HF generate do), evaluated in one batch, then one token at a time is chosen from the
// logits of the last position and fed back, until nPredict new tokens, a total length of maxLength
// tokens (prompt included, HF's max_length), EOS (stopAtEos) or the context is full.
//
// Choosing a token from logits z (nVocab floats):
//   greedy (or temperature <= 0): argmax z, the lowest id on ties.
//   sampled:
//     1. z_i / temperature;
//     2. candidates sorted by z descending (ties: lower id first); top-k keeps the first k (k <= 0: all);
//     3. p_i = exp(z_i − z_max) / Σ exp (double, over the kept candidates);
//     4. top-p (0 < p < 1): keep the shortest prefix whose cumulative probability reaches p (>= 1 kept);
//     5. u = (rng() >> 11) · 2⁻⁵³ with rng = std::mt19937_64(seed), one draw per token; the chosen
//        candidate is the first whose cumulative (kept, unnormalised) probability exceeds u · Σ kept.
//   The same seed, prompt, parameters and weights give the same tokens.
//
// Preset "notebook" (core/quant/README.md §1): "I have a dream", top-k 30, temperature 1, 50 tokens in total
// (prompt included), seed 42 - the notebook's fixed torch seed cannot be reproduced, only the recipe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "infer/engine.h"
#include "model/model.h"

namespace qz {

class Tokenizer;

struct GenerateParams {
    std::string prompt;
    int nPredict = 50;        // new tokens at most (<= 0: no limit other than maxLength / context)
    int maxLength = 0;        // total tokens at most, prompt included (0: no such limit)
    bool greedy = false;
    uint64_t seed = 42;
    float temperature = 1.0f;
    int topK = 0;             // <= 0: all tokens
    float topP = 1.0f;        // >= 1: off
    bool stopAtEos = true;
};

// "notebook" -> the notebook's recipe (see above); unknown names -> nullopt.
std::optional<GenerateParams> generatePreset(const std::string& name);

// Called after each new token with its id and the text it adds (may be empty while a multi-byte
// character is incomplete). Return false to stop (the result is then a cancelled error).
using TokenCallback = std::function<bool(int32_t token, const std::string& piece)>;

struct GenerateResult {
    std::vector<int32_t> promptTokens;
    std::vector<int32_t> tokens;   // generated ones
    std::string text;              // the generated text only
    std::string fullText;          // prompt + generated text, detokenized together
    enum class Stop { Length, Eos, Context } stop = Stop::Length;
    double promptSeconds = 0, generateSeconds = 0;
};

// One sampling step on logits (exposed for tests). rng is advanced once unless greedy.
int32_t sampleToken(const float* logits, int nVocab, const GenerateParams& params, std::mt19937_64& rng);

// Generation on a loaded engine with the model's tokenizer. The KV cache is reset first.
Result<GenerateResult> generate(Engine& engine, const Tokenizer& tokenizer, const GenerateParams& params,
                                TokenCallback onToken = {}, ProgressFn progress = {});

// Convenience: loads an Engine for model (+ overrides, + row sources as Engine::setWeightSource) and its
// tokenizer, then generate().
Result<GenerateResult> generateText(const Model& model, const GenerateParams& params, TokenCallback onToken = {},
                                    ProgressFn progress = {}, const WeightOverrides* overrides = nullptr,
                                    int threads = 0, const WeightSources* sources = nullptr);

}  // namespace qz

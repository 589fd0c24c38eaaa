// Perplexity and KL-divergence exactly as llama.cpp's llama-perplexity computes them.
//
// Perplexity (default mode): the token ids of the whole text (tokenized with BOS when the vocabulary
// adds one) are cut into nChunks = min(--chunks, nTokens / nCtx) chunks of nCtx tokens. Each chunk is
// evaluated from an empty KV cache at positions 0..nCtx−1; when the vocabulary adds BOS the chunk's
// first token is replaced by BOS for the evaluation (the scored targets stay the text's tokens).
// Only the second half is scored: with first = nCtx/2, the logits at positions first .. nCtx−2 predict
// the tokens at first+1 .. nCtx−1 (nCtx − 1 − first tokens per chunk). For each, with m = max logit,
//   nll = −(logit[tok] − m − log Σ exp(logit − m))   (exp in float, sums and nll in double).
// PPL = exp(mean nll); the "±" is PPL · sqrt((mean(nll²) − mean(nll)²) / (count − 1)).
// Final line: "Final estimate: PPL = %.4f +/- %.5f".
//
// KL-divergence (--kl-divergence-base / --kl-divergence): the base run stores, for every scored
// position, its log-probabilities quantized to uint16 (scale = (max − min')/65535 with
// min' = max(min logit, max logit − 16), q = round((logit − min')/scale), plus the float pair
// {scale, min log-prob}); the second run compares its own distribution to that:
//   KLD = Σ_{i: log p_base(i) > −16} p_base(i) · (log p_base(i) − log q(i)),
//   Δp = q(tok) − p_base(tok); same-top = argmax q == argmax p_base; plus PPL(Q), PPL(base), their
// correlation, ratio and difference with uncertainties, and percentiles of KLD and Δp
// (linear interpolation at fraction·(count−1)). Statistics as llama-perplexity prints them.
// The stored base (KldBase) can be saved / loaded in llama-perplexity's own file format.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "infer/engine.h"

namespace qz {

struct PerplexityParams {
    int nCtx = 512;          // -c
    int nChunks = -1;        // --chunks; -1 = as many as the text holds
    bool addBos = false;     // replace each chunk's first token by bosId (vocabularies that add BOS)
    int32_t bosId = -1;
};

// Defaults for an engine's model: addBos / bosId from its hyper-parameters.
PerplexityParams defaultPerplexityParams(const Engine& engine, int nCtx = 512, int nChunks = -1);

struct PerplexityResult {
    double ppl = 0;
    double pplError = 0;          // the "+/-" of the final estimate
    double meanNll = 0;
    int64_t count = 0;            // scored tokens
    int nChunks = 0;
    int nCtx = 0;
    std::vector<double> runningPpl;  // after each chunk ("[1]12.3456,[2]...")
};

// Base model log-probabilities for a KL-divergence run (llama-perplexity --kl-divergence-base).
struct KldBase {
    int nCtx = 0;
    int nVocab = 0;
    int nChunks = 0;
    std::vector<int32_t> tokens;     // nChunks × nCtx, the text's tokens (no BOS replacement)
    std::vector<uint16_t> logProbs;  // nChunks × (nCtx − 1 − nCtx/2) × rowStride()
    int rowStride() const { return 2 * ((nVocab + 1) / 2) + 4; }  // 2 floats then nVocab uint16
};

// Where a chunk's logits come from. By default engine.eval() runs the chunk (its first token replaced by
// BOS with addBos) from an empty cache; a provider instead fills `logits` with the logits of positions
// nCtx/2 .. nCtx−1 of chunk c ([(nCtx − nCtx/2) × nVocab], the same input), e.g. from a pass one decoder
// block at a time (calib/layered.h perplexityLayered). Chunks are asked for in order 0, 1, ...
using ChunkLogitsFn = std::function<Status(int chunk, std::vector<float>& logits)>;

// The number of chunks computePerplexity evaluates for a text of nTokens (0 if none).
int perplexityChunkCount(size_t nTokens, const PerplexityParams& params);

// Runs the perplexity of `tokens` (the whole text's ids). If baseOut is given, also records the
// base log-probabilities for a later computeKlDivergence. Progress: one unit per chunk.
Result<PerplexityResult> computePerplexity(Engine& engine, std::span<const int32_t> tokens,
                                           const PerplexityParams& params, ProgressFn progress = {},
                                           KldBase* baseOut = nullptr, const ChunkLogitsFn& chunkLogits = {});

struct KldResult {
    int64_t count = 0;
    double pplQ = 0, pplQError = 0;
    double pplBase = 0, pplBaseError = 0;
    double corLogPpl = 0;                       // Cor(ln PPL(Q), ln PPL(base)), fraction
    double lnPplRatio = 0, lnPplRatioError = 0;
    double pplRatio = 0, pplRatioError = 0;
    double pplDiff = 0, pplDiffError = 0;
    double meanKld = 0, meanKldError = 0;
    float maxKld = 0, kld999 = 0, kld99 = 0, kld95 = 0, kld90 = 0, medianKld = 0, kld10 = 0, kld05 = 0,
          kld01 = 0, kld001 = 0, minKld = 0;
    double meanDp = 0, meanDpError = 0;         // fractions (llama-perplexity prints ×100 %)
    float maxDp = 0, dp999 = 0, dp99 = 0, dp95 = 0, dp90 = 0, dp75 = 0, medianDp = 0, dp25 = 0, dp10 = 0,
          dp05 = 0, dp01 = 0, dp001 = 0, minDp = 0;
    double rmsDp = 0, rmsDpError = 0;           // fraction
    double sameTop = 0, sameTopError = 0;       // fraction
    std::vector<float> kldValues;               // per scored token, in evaluation order
};

// Evaluates the engine's model on the base's tokens and compares to the base's log-probabilities.
// params.addBos / bosId apply; nCtx and the chunk count come from the base.
Result<KldResult> computeKlDivergence(Engine& engine, const KldBase& base, const PerplexityParams& params,
                                      ProgressFn progress = {});

// "Final estimate: PPL = 8.2872 +/- 0.35352"
std::string formatFinalEstimate(const PerplexityResult& r);
// The "Perplexity statistics", "KL divergence statistics" and "Token probability statistics" blocks.
std::string formatKldReport(const KldResult& r);

// llama-perplexity's logits file: "_logits_", n_ctx, n_vocab, n_chunk (int32), tokens, log-probs.
Status saveKldBase(const KldBase& base, const std::string& path);
Result<KldBase> loadKldBase(const std::string& path);

}  // namespace qz

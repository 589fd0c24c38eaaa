#include "infer/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "tokenizer/model_vocab.h"
#include "tokenizer/tokenizer.h"

namespace qz {

std::optional<GenerateParams> generatePreset(const std::string& name) {
    if (name != "notebook") return std::nullopt;
    GenerateParams p;
    p.prompt = "I have a dream";
    p.nPredict = 0;
    p.maxLength = 50;
    p.greedy = false;
    p.seed = 42;
    p.temperature = 1.0f;
    p.topK = 30;
    p.topP = 1.0f;
    return p;
}

int32_t sampleToken(const float* logits, int nVocab, const GenerateParams& params, std::mt19937_64& rng) {
    if (nVocab <= 0) return -1;
    if (params.greedy || !(params.temperature > 0.0f)) {
        int32_t best = 0;
        for (int i = 1; i < nVocab; ++i)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    std::vector<int32_t> ids(static_cast<size_t>(nVocab));
    std::iota(ids.begin(), ids.end(), 0);
    const int k = params.topK > 0 ? std::min(params.topK, nVocab) : nVocab;
    auto byLogit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    if (k < nVocab) {
        std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), byLogit);
        ids.resize(static_cast<size_t>(k));
    } else {
        std::sort(ids.begin(), ids.end(), byLogit);
    }
    const double invT = 1.0 / static_cast<double>(params.temperature);
    const double zMax = static_cast<double>(logits[ids[0]]) * invT;
    std::vector<double> p(ids.size());
    double sum = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        p[i] = std::exp(static_cast<double>(logits[ids[i]]) * invT - zMax);
        sum += p[i];
    }
    size_t kept = ids.size();
    if (params.topP > 0.0f && params.topP < 1.0f) {
        double cum = 0;
        for (size_t i = 0; i < ids.size(); ++i) {
            cum += p[i] / sum;
            if (cum >= static_cast<double>(params.topP)) {
                kept = i + 1;
                break;
            }
        }
    }
    double keptSum = 0;
    for (size_t i = 0; i < kept; ++i) keptSum += p[i];
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const double target = u * keptSum;
    double cum = 0;
    for (size_t i = 0; i < kept; ++i) {
        cum += p[i];
        if (cum > target) return ids[i];
    }
    return ids[kept - 1];
}

Result<GenerateResult> generate(Engine& engine, const Tokenizer& tokenizer, const GenerateParams& params,
                                TokenCallback onToken, ProgressFn progress) {
    using Clock = std::chrono::steady_clock;
    if (params.temperature < 0.0f || !std::isfinite(params.temperature))
        return makeError("generate: temperature must be >= 0");
    if (!(params.topP >= 0.0f) || !std::isfinite(params.topP)) return makeError("generate: top-p must be >= 0");
    GenerateResult res;
    res.promptTokens = tokenizer.encode(params.prompt, true, false);
    if (res.promptTokens.empty()) return makeError("generate: the prompt gives no tokens");
    const int nVocab = engine.nVocab();
    const int nCtx = engine.nCtxMax();
    const int nPrompt = static_cast<int>(res.promptTokens.size());
    if (nPrompt >= nCtx)
        return makeError("generate: the prompt (" + std::to_string(nPrompt) + " tokens) does not fit the context (" +
                         std::to_string(nCtx) + ")");
    int limit = nCtx;  // total tokens
    if (params.maxLength > 0) limit = std::min(limit, params.maxLength);
    if (params.nPredict > 0) limit = std::min(limit, nPrompt + params.nPredict);
    const int toMake = std::max(0, limit - nPrompt);

    engine.reset();
    std::vector<float> logits(static_cast<size_t>(nVocab));
    auto t0 = Clock::now();
    if (auto st = engine.eval(res.promptTokens, 0, logits.data(), nPrompt - 1); !st) return st.error();
    res.promptSeconds = std::chrono::duration<double>(Clock::now() - t0).count();
    t0 = Clock::now();

    std::mt19937_64 rng(params.seed);
    std::vector<int32_t> all = res.promptTokens;
    const std::string promptText = tokenizer.detokenize(all, true);
    std::string fullText = promptText;
    res.stop = GenerateResult::Stop::Length;
    for (int i = 0; i < toMake; ++i) {
        if (progress && !progress({static_cast<double>(i) / std::max(1, toMake),
                                   "token " + std::to_string(i + 1) + "/" + std::to_string(toMake)}))
            return cancelledError();
        const int32_t tok = sampleToken(logits.data(), nVocab, params, rng);
        if (params.stopAtEos && tok == tokenizer.eos() && tok >= 0) {
            res.stop = GenerateResult::Stop::Eos;
            break;
        }
        res.tokens.push_back(tok);
        all.push_back(tok);
        std::string now = tokenizer.detokenize(all, true);
        std::string piece;
        if (now.size() >= fullText.size() && now.compare(0, fullText.size(), fullText) == 0)
            piece = now.substr(fullText.size());
        else
            piece = tokenizer.tokenToPiece(tok);
        fullText = std::move(now);
        if (onToken && !onToken(tok, piece)) return cancelledError();
        if (i + 1 == toMake) break;  // no logits needed for a token that will not be followed
        const int32_t one[1] = {tok};
        if (auto st = engine.eval(std::span<const int32_t>(one, 1), static_cast<int>(all.size()) - 1, logits.data());
            !st)
            return st.error();
    }
    if (res.stop == GenerateResult::Stop::Length && static_cast<int>(all.size()) >= nCtx)
        res.stop = GenerateResult::Stop::Context;
    res.generateSeconds = std::chrono::duration<double>(Clock::now() - t0).count();
    res.text = fullText.compare(0, promptText.size(), promptText) == 0 ? fullText.substr(promptText.size())
                                                                       : tokenizer.detokenize(res.tokens, true);
    // SentencePiece vocabularies add a space in front of the text; the prompt as typed has none.
    if (!fullText.empty() && fullText[0] == ' ' && (params.prompt.empty() || params.prompt[0] != ' '))
        fullText.erase(0, 1);
    res.fullText = std::move(fullText);
    if (progress) progress({1.0, "done"});
    return res;
}

Result<GenerateResult> generateText(const Model& model, const GenerateParams& params, TokenCallback onToken,
                                    ProgressFn progress, const WeightOverrides* overrides, int threads,
                                    const WeightSources* sources) {
    auto vocab = vocabForModel(model);
    if (!vocab) return vocab.error();
    auto tok = Tokenizer::create(*vocab);
    if (!tok) return tok.error();
    EngineOptions opt;
    opt.threads = threads;
    opt.overrides = overrides;
    opt.sources = sources;
    ProgressFn loadProgress;
    if (progress)
        loadProgress = [&](const ProgressInfo& p) { return progress({0.2 * p.fraction, "loading " + p.step}); };
    auto engine = Engine::load(model, opt, loadProgress);
    if (!engine) return engine.error();
    ProgressFn genProgress;
    if (progress) genProgress = [&](const ProgressInfo& p) { return progress({0.2 + 0.8 * p.fraction, p.step}); };
    return generate(**engine, **tok, params, std::move(onToken), genProgress);
}

}  // namespace qz

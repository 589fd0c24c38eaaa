#include "infer/evaluate.h"

#include "infer/text_tokens.h"

namespace qz {

namespace {

ProgressFn scaled(const ProgressFn& p, double from, double to) {
    if (!p) return {};
    return [p, from, to](const ProgressInfo& i) { return p({from + (to - from) * i.fraction, i.step}); };
}

Result<std::unique_ptr<Engine>> loadFor(const Model& model, int nCtx, const EvalParams& params,
                                        const ProgressFn& progress, const WeightOverrides* overrides,
                                        const WeightSources* sources) {
    EngineOptions opt;
    opt.threads = params.threads;
    opt.nCtx = nCtx;
    opt.overrides = overrides;
    opt.sources = sources;
    opt.kvF16 = params.llamaCppEmulation;
    opt.ggmlGelu = params.llamaCppEmulation;
    if (!params.llamaCppEmulation) opt.ggmlActivations = false;  // else the model format's default
    return Engine::load(model, opt, scaled(progress, 0.0, 0.1));
}

}  // namespace

Result<PerplexityResult> evaluatePerplexity(const Model& model, std::string_view text,
                                            const EvalParams& params, ProgressFn progress,
                                            const WeightOverrides* overrides, KldBase* baseOut,
                                            const WeightSources* sources) {
    auto in = tokenizeForPerplexity(model, text, params.forceBos);
    if (!in) return in.error();
    auto e = loadFor(model, params.nCtx, params, progress, overrides, sources);
    if (!e) return e.error();
    PerplexityParams p = in->params;
    p.nCtx = params.nCtx;
    p.nChunks = params.nChunks;
    return computePerplexity(**e, in->tokens, p, scaled(progress, 0.1, 1.0), baseOut);
}

Result<KldResult> evaluateKlDivergence(const Model& model, const KldBase& base, const EvalParams& params,
                                       ProgressFn progress, const WeightOverrides* overrides,
                                       const WeightSources* sources) {
    // BOS handling as the tokenizer of this model says (the base's tokens already carry the text's BOS).
    auto in = tokenizeForPerplexity(model, "", params.forceBos);
    if (!in) return in.error();
    auto e = loadFor(model, base.nCtx, params, progress, overrides, sources);
    if (!e) return e.error();
    return computeKlDivergence(**e, base, in->params, scaled(progress, 0.1, 1.0));
}

}  // namespace qz

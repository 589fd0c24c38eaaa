// quantzoo-cli perplexity: llama-perplexity's perplexity and KL-divergence on our CPU engine.
#include <cstdio>

#include "args.h"
#include "common/file_util.h"
#include "io/hf_folder.h"
#include "commands.h"
#include "infer/engine.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kPerplexityHelp =
    "usage: quantzoo-cli perplexity MODEL -f TEXT [-c N] [--chunks K] [--bos | --no-bos] [--threads T]\n"
    "                               [--kl-divergence-base FILE [--kl-divergence]] [--f32-attention]\n"
    "                               [--f32-activations] [--quiet]\n"
    "  Perplexity as llama-perplexity computes it: the text cut into chunks of N tokens (default 512),\n"
    "  each evaluated from an empty cache (first token replaced by BOS when the vocabulary adds one),\n"
    "  the second half of each chunk scored. Prints the running estimate per chunk and\n"
    "  'Final estimate: PPL = X +/- Y'.\n"
    "  --bos forces a BOS even if the vocabulary does not add one; --no-bos never uses one.\n"
    "  --kl-divergence-base FILE alone: also writes the base log-probabilities to FILE (llama-perplexity's\n"
    "  format). With --kl-divergence: reads FILE (its text tokens, -c and chunk count) and prints the\n"
    "  KL-divergence statistics of MODEL against it (-f is then not needed).\n"
    "  --f32-attention: plain F32 K/V cache and GELU (llama.cpp's F16 KV cache emulation off).\n"
    "  --f32-activations: F32 activations against the weights widened to F32 (HF semantics; the default\n"
    "  for HF models). Without it a GGUF file's 16-bit and quantized weights take activations encoded as\n"
    "  llama.cpp's CPU backend does (8-bit blocks, F16, BF16).\n";

}  // namespace

int cmdPerplexity(int argc, char** argv) {
    Args args({"-f", "-c", "--chunks", "--kl-divergence-base", "--threads"},
              {"--kl-divergence", "--bos", "--no-bos", "--quiet", "--help", "--f32-attention", "--f32-activations"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli perplexity: %s\n%s", e.c_str(), kPerplexityHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kPerplexityHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usageError("expected one MODEL");
    std::string err;
    const int nCtx = static_cast<int>(args.intOr("-c", 512, err));
    const int nChunks = static_cast<int>(args.intOr("--chunks", -1, err));
    const int threads = static_cast<int>(args.intOr("--threads", 0, err));
    if (!err.empty()) return usageError(err);
    if (nCtx < 4 || nCtx > 1 << 20) return usageError("-c must be at least 4");
    if (args.has("--bos") && args.has("--no-bos")) return usageError("give only one of --bos, --no-bos");
    const bool kld = args.has("--kl-divergence");
    if (kld && !args.has("--kl-divergence-base")) return usageError("--kl-divergence needs --kl-divergence-base FILE");
    if (!kld && !args.has("-f")) return usageError("-f TEXT is required");
    const bool quiet = args.has("--quiet");

    auto fail = [](const qz::Error& e) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", e.message.c_str());
        return e.cancelled ? kCancelled : kFailed;
    };
    std::string text;
    if (args.has("-f")) {  // a regular file only (not /dev/zero, not a FIFO), at most 1 GiB, cancellable
        auto t = qz::readRegularFile(*args.value("-f"), kMaxTextBytes, [] { return interrupted(); });
        if (!t) return fail(t.error());
        text = std::move(*t);
    }
    auto model = qz::openModel(args.positional()[0]);
    if (!model) return fail(model.error());
    if (args.has("--kl-divergence-base") && !kld)
        if (auto st = qz::refuseOverwritingModel(**model, *args.value("--kl-divergence-base")); !st)
            return fail(st.error());

    // Tokens and BOS handling (the KLD base carries its own tokens; only the BOS rule is needed then).
    auto in = qz::tokenizeForPerplexity(**model, kld ? std::string_view() : std::string_view(text),
                                        args.has("--bos"));
    if (!in) return fail(in.error());
    if (args.has("--no-bos") && in->params.addBos) {
        if (!in->tokens.empty() && in->tokens.front() == in->params.bosId) in->tokens.erase(in->tokens.begin());
        in->params.addBos = false;
    }

    qz::KldBase base;
    if (kld) {
        auto b = qz::loadKldBase(*args.value("--kl-divergence-base"));
        if (!b) return fail(b.error());
        base = std::move(*b);
    }
    qz::EngineOptions opt;
    opt.threads = threads;
    opt.nCtx = kld ? base.nCtx : nCtx;
    opt.kvF16 = opt.ggmlGelu = !args.has("--f32-attention");
    if (args.has("--f32-activations")) opt.ggmlActivations = false;
    ProgressLine loadLine("load", quiet);
    auto engine = qz::Engine::load(**model, opt, loadLine.callback());
    loadLine.finish();
    if (!engine) return fail(engine.error());

    qz::PerplexityParams p = in->params;
    p.nCtx = nCtx;
    p.nChunks = nChunks;
    if (kld) {
        if (base.nVocab != (*engine)->nVocab()) {
            std::fprintf(stderr, "quantzoo-cli: %s has %d vocabulary entries, the model %d\n",
                         args.value("--kl-divergence-base")->c_str(), base.nVocab, (*engine)->nVocab());
            return kFailed;
        }
        ProgressLine line("kl-divergence", quiet);
        auto r = qz::computeKlDivergence(**engine, base, p, line.callback());
        line.finish();
        if (!r) return fail(r.error());
        std::fputs(qz::formatKldReport(*r).c_str(), stdout);
        return kOk;
    }
    const bool saveBase = args.has("--kl-divergence-base");
    ProgressLine line("perplexity", quiet);
    auto r = qz::computePerplexity(**engine, in->tokens, p, line.callback(), saveBase ? &base : nullptr);
    line.finish();
    if (!r) return fail(r.error());
    for (size_t i = 0; i < r->runningPpl.size(); ++i)
        std::printf("%s[%zu]%.4f", i ? "," : "", i + 1, r->runningPpl[i]);
    std::printf("\n%s\n", qz::formatFinalEstimate(*r).c_str());
    std::fflush(stdout);
    if (saveBase) {
        if (auto st = qz::saveKldBase(base, *args.value("--kl-divergence-base")); !st) return fail(st.error());
        if (!quiet)
            std::fprintf(stderr, "saved the base log-probabilities to %s\n",
                         args.value("--kl-divergence-base")->c_str());
    }
    return kOk;
}

}  // namespace qzcli

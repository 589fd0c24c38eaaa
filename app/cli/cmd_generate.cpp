// quantzoo-cli generate: text generation on our CPU engine (greedy or sampled, streamed to stdout).
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "infer/generate.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kGenerateHelp =
    "usage: quantzoo-cli generate MODEL [-p PROMPT] [-n N] [--max-length L] [--seed S] [--temp T]\n"
    "                             [--top-k K] [--top-p P] [--greedy] [--preset notebook] [--no-eos]\n"
    "                             [--threads T] [--quiet]\n"
    "  Prints the prompt and the generated text as it is produced (stdout), then a timing line (stderr).\n"
    "  -n: new tokens (default 50); --max-length: total tokens including the prompt (HF max_length).\n"
    "  Sampling: logits / T, top-k, top-p, then one draw of std::mt19937_64(seed) per token (the same\n"
    "  seed gives the same text). --greedy or --temp 0: always the most likely token.\n"
    "  --preset notebook: prompt \"I have a dream\", top-k 30, 50 tokens in total, seed 42 (options given\n"
    "  explicitly override the preset). --no-eos: do not stop at the end-of-sequence token.\n";
}  // namespace

int cmdGenerate(int argc, char** argv) {
    Args args({"-p", "-n", "--max-length", "--seed", "--temp", "--top-k", "--top-p", "--preset", "--threads"},
              {"--greedy", "--quiet", "--help", "--no-eos"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli generate: %s\n%s", e.c_str(), kGenerateHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kGenerateHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usageError("expected one MODEL");
    qz::GenerateParams p;
    if (auto preset = args.value("--preset")) {
        auto pp = qz::generatePreset(*preset);
        if (!pp) return usageError("unknown preset '" + *preset + "' (known: notebook)");
        p = *pp;
    }
    std::string err;
    if (args.has("-p")) p.prompt = *args.value("-p");
    if (args.has("-n")) {
        p.nPredict = static_cast<int>(args.intOr("-n", 50, err));
        if (!args.has("--max-length")) p.maxLength = 0;
    }
    if (args.has("--max-length")) p.maxLength = static_cast<int>(args.intOr("--max-length", 0, err));
    if (args.has("--seed")) {
        const long long s = args.intOr("--seed", 42, err);
        if (s < 0) err = "--seed must be >= 0";
        p.seed = static_cast<uint64_t>(s);
    }
    if (args.has("--temp")) p.temperature = static_cast<float>(args.doubleOr("--temp", 1.0, err));
    if (args.has("--top-k")) p.topK = static_cast<int>(args.intOr("--top-k", 0, err));
    if (args.has("--top-p")) p.topP = static_cast<float>(args.doubleOr("--top-p", 1.0, err));
    if (args.has("--greedy")) p.greedy = true;
    if (args.has("--no-eos")) p.stopAtEos = false;
    const int threads = static_cast<int>(args.intOr("--threads", 0, err));
    if (!err.empty()) return usageError(err);
    if (p.prompt.empty()) return usageError("a prompt is needed (-p PROMPT or --preset notebook)");
    if (p.temperature < 0) return usageError("--temp must be >= 0");
    if (p.topP < 0 || p.topP > 1) return usageError("--top-p must be in 0..1");
    if (p.nPredict < 0 || p.maxLength < 0) return usageError("-n and --max-length must be >= 0");

    auto model = qz::openModel(args.positional()[0]);
    if (!model) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", model.error().message.c_str());
        return kFailed;
    }
    const bool quiet = args.has("--quiet");
    std::fputs(p.prompt.c_str(), stdout);
    std::fflush(stdout);
    auto onToken = [](int32_t, const std::string& piece) {
        std::fputs(piece.c_str(), stdout);
        std::fflush(stdout);
        return !interrupted();
    };
    qz::ProgressFn progress = [](const qz::ProgressInfo&) { return !interrupted(); };
    auto r = qz::generateText(**model, p, onToken, progress, nullptr, threads);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (!r) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", r.error().message.c_str());
        return r.error().cancelled ? kCancelled : kFailed;
    }
    if (!quiet) {
        const char* why = r->stop == qz::GenerateResult::Stop::Eos       ? "end of sequence"
                          : r->stop == qz::GenerateResult::Stop::Context ? "context full"
                                                                         : "length";
        std::fprintf(stderr, "%zu prompt tokens (%.1f ms), %zu generated (%.2f tokens/s), stopped: %s\n",
                     r->promptTokens.size(), r->promptSeconds * 1000, r->tokens.size(),
                     r->generateSeconds > 0 ? r->tokens.size() / r->generateSeconds : 0.0, why);
    }
    return kOk;
}

}  // namespace qzcli

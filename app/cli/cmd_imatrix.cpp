// quantzoo-cli imatrix: llama-imatrix's importance matrix (GGUF) computed with our CPU engine.
#include <cstdio>

#include "args.h"
#include "common/file_util.h"
#include "io/hf_folder.h"
#include "commands.h"
#include "calib/imatrix.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kImatrixHelp =
    "usage: quantzoo-cli imatrix MODEL -f TEXT -o OUT.gguf [-c N] [--chunks K] [--process-output]\n"
    "                            [--threads T] [--quiet]\n"
    "  Runs TEXT through the model in chunks of N tokens (default 512; BOS at each chunk start when the\n"
    "  vocabulary adds one) and writes, per linear layer, the sum of squared input activations per column\n"
    "  and the token count: the GGUF imatrix that llama-quantize --imatrix and 'export --imatrix' read.\n"
    "  The output layer is left out unless --process-output.\n";
}  // namespace

int cmdImatrix(int argc, char** argv) {
    Args args({"-f", "-o", "-c", "--chunks", "--threads"}, {"--process-output", "--quiet", "--help"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli imatrix: %s\n%s", e.c_str(), kImatrixHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kImatrixHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usageError("expected one MODEL");
    if (!args.has("-f")) return usageError("-f TEXT is required");
    if (!args.has("-o")) return usageError("-o OUT.gguf is required");
    std::string err;
    qz::ImatrixParams p;
    p.nCtx = static_cast<int>(args.intOr("-c", 512, err));
    p.nChunks = static_cast<int>(args.intOr("--chunks", -1, err));
    p.threads = static_cast<int>(args.intOr("--threads", 0, err));
    p.processOutput = args.has("--process-output");
    p.datasetName = *args.value("-f");
    if (!err.empty()) return usageError(err);
    if (p.nCtx < 2 || p.nCtx > 1 << 20) return usageError("-c must be at least 2");

    // A regular file only (not /dev/zero, not a FIFO), at most 1 GiB, cancellable.
    auto text = qz::readRegularFile(*args.value("-f"), kMaxTextBytes, [] { return interrupted(); });
    if (!text) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", text.error().message.c_str());
        return text.error().cancelled ? kCancelled : kFailed;
    }
    auto model = qz::openModel(args.positional()[0]);
    if (!model) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", model.error().message.c_str());
        return kFailed;
    }
    if (auto st = qz::refuseOverwritingModel(**model, *args.value("-o")); !st) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", st.error().message.c_str());
        return kFailed;
    }
    ProgressLine line("imatrix", args.has("--quiet"));
    auto r = qz::computeImatrix(**model, *text, p, line.callback());
    line.finish();
    if (!r) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", r.error().message.c_str());
        return r.error().cancelled ? kCancelled : kFailed;
    }
    if (auto st = qz::writeImatrixGguf(*r, *args.value("-o")); !st) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", st.error().message.c_str());
        return kFailed;
    }
    if (!args.has("--quiet"))
        std::fprintf(stderr, "imatrix: %zu tensors, %lld chunks of %lld tokens -> %s\n", r->entries.size(),
                     static_cast<long long>(r->chunkCount), static_cast<long long>(r->chunkSize),
                     args.value("-o")->c_str());
    return kOk;
}

}  // namespace qzcli

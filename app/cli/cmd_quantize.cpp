#include <cstdio>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "jobs/quantize_job.h"
#include "jobs/report.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kQuantizeHelp =
    "usage: quantzoo-cli quantize MODEL --method absmax|zeropoint|nf4|fp4|llm-int8 [--bits N]\n"
    "                             [--granularity tensor|row|group]\n"
    "                             [--group-size G] [--tensors REGEX | --all | --all-2d] [--report OUT.json]\n"
    "                             [--markdown OUT.md] [--bins 150] [--range -2,2] [--quiet]\n"
    "  Fake-quantizes the selected tensors (default: all 2-D weights) and reports, per tensor, MSE,\n"
    "  max abs error, SQNR (dB), cosine similarity, size before/after and bits per weight.\n"
    "  --bits 2..8 (default 8), --granularity default tensor, --group-size default 128.\n"
    "  --range lo,hi and --bins set the whole-model histogram (default 150 bins over -2,2).\n"
    "  Without --report the JSON report goes to stdout.\n"
    "bitsandbytes methods (bits and granularity are fixed by the format):\n"
    "  --method nf4|fp4 [--block-size 64] [--double-quant]\n"
    "      4-bit NF4 / FP4 code book, block-wise absmax (blocks of 32..4096, power of two); --double-quant\n"
    "      quantizes the block scales to 8 bits (blocks of 256, mean offset, dynamic map) as QLoRA.\n"
    "  --method llm-int8 --calib TEXT [--threshold 6.0] [--calib-ctx 512] [--calib-chunks 16]\n"
    "      LLM.int8(): runs TEXT through the model, input features whose max |activation| >= threshold\n"
    "      keep fp16 weight columns, the rest per-row absmax int8.\n";
}  // namespace

int cmdQuantize(int argc, char** argv) {
    Args args({"--method", "--bits", "--granularity", "--group-size", "--tensors", "--report", "--markdown",
               "--bins", "--range", "--block-size", "--threshold", "--calib", "--calib-ctx", "--calib-chunks"},
              {"--all", "--all-2d", "--quiet", "--help", "--double-quant"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli quantize: %s\n%s", e.c_str(), kQuantizeHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kQuantizeHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usageError("expected one MODEL");

    qz::QuantizeParams params;
    const auto method = qz::parseMethod(args.valueOr("--method", "absmax"));
    if (!method) return usageError("unknown method '" + args.valueOr("--method", "") + "'");
    const auto gran = qz::parseGranularity(args.valueOr("--granularity", "tensor"));
    if (!gran) return usageError("unknown granularity '" + args.valueOr("--granularity", "") + "'");
    std::string err;
    params.spec.method = *method;
    params.spec.granularity = *gran;
    params.spec.bits = static_cast<int>(args.intOr("--bits", 8, err));
    params.spec.groupSize = static_cast<int>(args.intOr("--group-size", 128, err));
    params.modelHistogram.bins = static_cast<int>(args.intOr("--bins", 150, err));
    params.spec.blockSize = static_cast<int>(args.intOr("--block-size", 64, err));
    params.spec.doubleQuant = args.has("--double-quant");
    params.spec.threshold = static_cast<float>(args.doubleOr("--threshold", 6.0, err));
    params.spec.calibrationPath = args.valueOr("--calib", "");
    params.spec.calibCtx = static_cast<int>(args.intOr("--calib-ctx", 512, err));
    params.spec.calibChunks = static_cast<int>(args.intOr("--calib-chunks", 16, err));
    if (!err.empty()) return usageError(err);
    if (auto r = args.value("--range")) {
        std::istringstream in(*r);
        char comma = 0;
        if (!(in >> params.modelHistogram.lo >> comma >> params.modelHistogram.hi) || comma != ',')
            return usageError("--range needs lo,hi (e.g. -2,2)");
    }
    if (auto st = params.spec.validate(); !st) return usageError(st.error().message);
    const bool fourBit = qz::isBnbFourBit(params.spec.method), int8 = params.spec.method == qz::QuantMethod::LlmInt8;
    if (!fourBit && (args.has("--block-size") || args.has("--double-quant")))
        return usageError("--block-size and --double-quant apply to --method nf4|fp4");
    if (!int8 && (args.has("--threshold") || args.has("--calib") || args.has("--calib-ctx") ||
                  args.has("--calib-chunks")))
        return usageError("--threshold and --calib* apply to --method llm-int8");
    if (int8 && params.spec.calibrationPath.empty()) return usageError("--method llm-int8 needs --calib TEXT");
    const int selectors = args.has("--all") + args.has("--all-2d") + args.has("--tensors");
    if (selectors > 1) return usageError("give only one of --all, --all-2d, --tensors");
    if (args.has("--all")) params.filter.mode = qz::TensorSelection::All;
    if (args.has("--tensors")) {
        params.filter.mode = qz::TensorSelection::Regex;
        params.filter.regex = *args.value("--tensors");
    }

    auto model = qz::openModel(args.positional()[0]);
    if (!model) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", model.error().message.c_str());
        return kFailed;
    }
    ProgressLine line("quantize", args.has("--quiet"));
    auto result = qz::runQuantize(**model, params, line.callback());
    line.finish();
    if (!result) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", result.error().message.c_str());
        return result.error().cancelled ? kCancelled : kFailed;
    }
    const std::string json = qz::reportJson(**model, *result);
    if (auto path = args.value("--report")) {
        if (auto st = qz::writeFileAtomic(*path, json); !st) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", st.error().message.c_str());
            return kFailed;
        }
    } else {
        std::fputs(json.c_str(), stdout);
    }
    if (auto path = args.value("--markdown")) {
        if (auto st = qz::writeFileAtomic(*path, qz::reportMarkdown(**model, *result)); !st) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", st.error().message.c_str());
            return kFailed;
        }
    }
    if (!args.has("--quiet"))
        std::fprintf(stderr, "quantized %zu tensors (%s): %llu -> %llu bytes, SQNR %.2f dB, %.2f s\n",
                     result->tensors.size(), result->spec.describe().c_str(),
                     static_cast<unsigned long long>(result->bytesBefore),
                     static_cast<unsigned long long>(result->bytesAfter), result->total.sqnrDb, result->seconds);
    return kOk;
}

}  // namespace qzcli

#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "common/safe_file.h"
#include "io/hf_folder.h"
#include "jobs/quantize_job.h"
#include "jobs/report.h"
#include "model/model.h"
#include "quant/code_view.h"
#include "quant/llm_int8.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kQuantizeHelp =
    "usage: quantzoo-cli quantize MODEL --method absmax|zeropoint|nf4|fp4|llm-int8 [--bits N]\n"
    "                             [--granularity tensor|row|group]\n"
    "                             [--group-size G] [--tensors REGEX | --all | --all-2d] [--report OUT.json]\n"
    "                             [--markdown OUT.md] [--bins 150] [--range -2,2] [--quiet]\n"
    "                             [--show-codes [ROWSxCOLS]]\n"
    "  Fake-quantizes the selected tensors (default: all 2-D weights) and reports, per tensor, MSE,\n"
    "  max abs error, SQNR (dB), cosine similarity, size before/after and bits per weight.\n"
    "  --bits 2..8 (default 8), --granularity default tensor, --group-size default 128.\n"
    "  --bins sets the whole-model histogram's bins (150); its range is the weights' 0.1 %..99.9 %\n"
    "  percentiles unless --range lo,hi fixes it (the first notebook: --range -2,2).\n"
    "  Without --report the JSON report goes to stdout.\n"
    "  --show-codes [ROWSxCOLS] prints, for the first selected tensor, the top-left ROWSxCOLS corner\n"
    "      (default 8x8) of the original values, the integer codes, the dequantized values and the error,\n"
    "      the scale / zero point of each group, and the whole tensor as torch prints it (the first\n"
    "      notebook's view); on stdout, instead of the JSON report (use --report for that).\n"
    "bitsandbytes methods (bits and granularity are fixed by the format):\n"
    "  --method nf4|fp4 [--block-size 64] [--double-quant]\n"
    "      4-bit NF4 / FP4 code book, block-wise absmax (blocks of 32..4096, power of two); --double-quant\n"
    "      quantizes the block scales to 8 bits (blocks of 256, mean offset, dynamic map) as QLoRA.\n"
    "  --method llm-int8 --calib TEXT [--threshold 6.0] [--calib-ctx 512] [--calib-chunks 16]\n"
    "      LLM.int8(): runs TEXT through the model, input features whose max |activation| >= threshold\n"
    "      keep fp16 weight columns, the rest per-row absmax int8.\n";
}  // namespace

int cmdQuantize(int argc, char** argv) {
    // "--show-codes" takes an optional ROWSxCOLS: rewrite it as "--show-codes=..." for the parser.
    std::vector<std::string> argStore;
    const std::regex size(R"(\d+x\d+)");
    for (int i = 0; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--show-codes") {
            if (i + 1 < argc && std::regex_match(argv[i + 1], size))
                argStore.push_back(a + "=" + argv[++i]);
            else
                argStore.push_back(a + "=8x8");
        } else {
            argStore.push_back(a);
        }
    }
    std::vector<char*> argPtrs;
    for (auto& a : argStore) argPtrs.push_back(a.data());
    argc = static_cast<int>(argPtrs.size());
    argv = argPtrs.data();
    Args args({"--method", "--bits", "--granularity", "--group-size", "--tensors", "--report", "--markdown",
               "--bins", "--range", "--block-size", "--threshold", "--calib", "--calib-ctx", "--calib-chunks",
               "--show-codes"},
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
        params.modelHistogram.mode = qz::HistogramRangeMode::Fixed;
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
    long long codeRows = 0, codeCols = 0;
    if (auto sc = args.value("--show-codes")) {
        std::smatch mm;
        const std::regex dims(R"((\d{1,4})x(\d{1,4}))");
        if (!std::regex_match(*sc, mm, dims)) return usageError("--show-codes needs ROWSxCOLS (e.g. 8x8)");
        codeRows = std::stoll(mm[1]);
        codeCols = std::stoll(mm[2]);
        if (codeRows < 1 || codeCols < 1) return usageError("--show-codes needs at least 1x1");
    }
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
    if (codeRows > 0 && !result->tensors.empty()) {
        const qz::TensorQuantResult& tr = result->tensors.front();
        const qz::TensorInfo& ti = (**model).tensors[tr.tensorIndex];
        auto x = qz::readTensorF32(**model, ti);
        if (!x) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", x.error().message.c_str());
            return kFailed;
        }
        qz::CodeWindowRequest req;
        req.rows = codeRows;
        req.cols = codeCols;
        if (params.spec.method == qz::QuantMethod::LlmInt8) {
            req.inputIsRows = ti.shape.size() == 2 && qz::weightInputIsRows(ti.name);
            req.outlierFeatures = tr.outlierFeatures;
        }
        auto w = qz::makeCodeWindow(params.spec, x->data(), ti.rows(), ti.cols(), req, ti.shape.size() <= 1);
        if (!w) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", w.error().message.c_str());
            return kFailed;
        }
        std::fputs(qz::codeWindowText(*w, ti.name).c_str(), stdout);
    }
    for (const char* o : {"--report", "--markdown"})  // a report never replaces a file of the model
        if (auto path = args.value(o))
            if (auto st = qz::refuseOverwritingModel(**model, *path); !st) {
                std::fprintf(stderr, "quantzoo-cli: %s\n", st.error().message.c_str());
                return kFailed;
            }
    if (auto path = args.value("--report")) {
        if (auto st = qz::writeFileAtomic(*path, json); !st) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", st.error().message.c_str());
            return kFailed;
        }
    } else if (codeRows == 0) {
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

// quantzoo-cli compare: several variants of one model measured side by side against the original
// (core/variants/variants.h), written as a table (CSV), a comparison project file (JSON, the format the
// GUI's Compare workspace opens) and the size-versus-KL-divergence plot. The CLI links no Qt, so the plot
// is written as SVG by core (sizeKldSvg).
#include <cstdio>
#include <filesystem>

#include "args.h"
#include "commands.h"
#include "common/file_util.h"
#include "common/safe_file.h"
#include "progress_line.h"
#include "variants/variants.h"

namespace qzcli {

namespace {
const char* kCompareHelp =
    "usage: quantzoo-cli compare MODEL VARIANT... -f TEXT [-c N] [--chunks K] [--calib FILE] [--threads T]\n"
    "                            [--csv OUT.csv] [--report OUT.json] [--plot OUT.svg] [--quiet]\n"
    "  Measures each VARIANT against MODEL on TEXT as llama-perplexity does (-c N tokens per chunk, default\n"
    "  128; --chunks K, default 32, 0 = all): perplexity, mean KL-divergence and same-top-token rate, plus\n"
    "  size, bits per weight and the weights' error (MSE, SQNR). A VARIANT is\n"
    "    a GGUF file, a GPTQ folder or an EXL2 folder (e.g. an export of MODEL), or a method spec:\n"
    "    absmax:BITS[:tensor|row|group[:G]]   zeropoint:BITS[:...]   nf4[:BLOCK]  fp4[:BLOCK]\n"
    "    nf4-dq[:BLOCK]  fp4-dq[:BLOCK]   llm-int8[:THRESHOLD] (needs --calib FILE)\n"
    "  --csv: one row per model; --report: the comparison (opens in the GUI's Compare workspace);\n"
    "  --plot: bits per weight against mean KLD with the Pareto front, as SVG.\n"
    "  Prints the table on stdout.\n";
} // namespace

int cmdCompare(int argc, char** argv) {
    Args args({"-f", "-c", "--chunks", "--calib", "--threads", "--csv", "--report", "--plot"},
              {"--quiet", "--help"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli compare: %s\n%s", e.c_str(), kCompareHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kCompareHelp, stdout);
        return kOk;
    }
    if (args.positional().size() < 2) return usageError("expected MODEL and at least one VARIANT");
    if (!args.has("-f")) return usageError("-f TEXT is required");
    std::string err;
    const int nCtx = int(args.intOr("-c", 128, err));
    const int nChunks = int(args.intOr("--chunks", 32, err));
    const int threads = int(args.intOr("--threads", 0, err));
    if (!err.empty()) return usageError(err);
    if (nCtx < 4 || nCtx > (1 << 20)) return usageError("-c must be 4 .. 1048576");
    if (nChunks < 0) return usageError("--chunks must be >= 0");
    if (threads < 0 || threads > 1024) return usageError("--threads must be 0 .. 1024");
    if (auto plot = args.value("--plot"); plot && std::filesystem::path(*plot).extension() != ".svg")
        return usageError("--plot writes SVG (the command line has no image library): give a .svg name");
    const bool quiet = args.has("--quiet");

    auto fail = [](const qz::Error& e) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", e.message.c_str());
        return e.cancelled ? kCancelled : kFailed;
    };
    auto text = qz::readRegularFile(*args.value("-f"), kMaxTextBytes, [] { return interrupted(); });
    if (!text) return fail(text.error());
    auto opened = qz::openModel(args.positional()[0]);
    if (!opened) return fail(opened.error());
    std::shared_ptr<const qz::Model> model = std::move(*opened);
    std::vector<std::string> inputs{model->path};
    for (const char* o : {"--csv", "--report", "--plot"})
        if (auto v = args.value(o))
            if (auto st = qz::refuseOverwritingInputs(*v, inputs); !st) return fail(st.error());

    qz::Comparison c;
    // Absolute paths: the project file opens from any folder (the GUI's Compare workspace).
    auto absolute = [](const std::string& p) {
        std::error_code ec;
        const auto a = std::filesystem::absolute(p, ec);
        return ec ? p : a.lexically_normal().string();
    };
    c.modelPath = absolute(model->path);
    c.textPath = absolute(*args.value("-f"));
    c.nCtx = nCtx;
    c.nChunks = nChunks;
    for (size_t i = 1; i < args.positional().size(); ++i) {
        const std::string& spec = args.positional()[i];
        std::error_code ec;
        qz::Result<qz::Variant> v = qz::makeError("");
        if (std::filesystem::exists(spec, ec)) {
            ProgressLine line("open " + spec, quiet);
            v = qz::openFileVariant(*model, spec, line.callback());
            line.finish();
            if (v) v->path = absolute(v->path);
        } else {
            auto q = qz::parseMethodSpec(spec);
            if (!q) return usageError(q.error().message + " (nor is it an existing file)");
            if (qz::needsCalibration(q->method)) {
                if (!args.has("--calib")) return usageError(spec + " needs --calib FILE");
                q->calibrationPath = *args.value("--calib");
            }
            ProgressLine line(spec, quiet);
            v = qz::makeFakeQuantVariant(*model, *q, line.callback(), threads);
            line.finish();
            if (v) v->name = spec;
        }
        if (!v) return fail(v.error());
        c.variants.push_back(std::move(*v));
        if (c.selected.size() < 8)
            c.selected.push_back(int(c.variants.size()) - 1); // the GUI shows 2..8 at a time
    }

    qz::EvalParams ep;
    ep.nCtx = nCtx;
    ep.nChunks = nChunks > 0 ? nChunks : -1;
    ep.threads = threads;
    {
        ProgressLine line("evaluate", quiet);
        if (auto st = qz::evaluateComparison(model, c, *text, ep, {}, line.callback()); !st) {
            line.finish();
            return fail(st.error());
        }
        line.finish();
    }

    const double originalBpw = qz::modelBitsPerWeight(*model);
    std::printf("%-28s %12s %8s %12s %10s %12s %10s\n", "model", "bytes", "bpw", "PPL", "+/-", "mean KLD",
                "same top %");
    std::printf("%-28s %12llu %8.3f %12.4f %10.5f %12s %10s\n", "original",
                (unsigned long long)model->totalBytes(), originalBpw, c.originalEval->ppl,
                c.originalEval->pplError, "-", "-");
    for (const auto& v : c.variants) {
        if (!v.eval.done) {
            std::printf("%-28s %12llu %8.3f  error: %s\n", v.name.c_str(), (unsigned long long)v.bytes,
                        v.bitsPerWeight, v.eval.error.c_str());
            continue;
        }
        std::printf("%-28s %12llu %8.3f %12.4f %10.5f %12.6f %10.3f\n", v.name.c_str(),
                    (unsigned long long)v.bytes, v.bitsPerWeight, v.eval.ppl, v.eval.pplError, v.eval.meanKld,
                    100.0 * v.eval.sameTop);
    }
    std::fflush(stdout);
    if (auto p = args.value("--csv"))
        if (auto st = qz::writeFileAtomic(*p, qz::comparisonCsv(c, originalBpw, model->totalBytes())); !st)
            return fail(st.error());
    if (auto p = args.value("--report"))
        if (auto st = qz::saveComparison(c, *p); !st) return fail(st.error());
    if (auto p = args.value("--plot"))
        if (auto st = qz::writeFileAtomic(*p, qz::sizeKldSvg(c)); !st) return fail(st.error());
    bool anyFailed = false;
    for (const auto& v : c.variants)
        anyFailed |= !v.eval.done;
    return anyFailed ? kFailed : kOk;
}

} // namespace qzcli

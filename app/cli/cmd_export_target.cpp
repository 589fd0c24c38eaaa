// quantzoo-cli export --format gguf --target-size SIZE | --target-bpw X: per-tensor types chosen for the
// least predicted loss within a size (core/export/target_size.h), written by the GGUF exporter.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common/file_util.h"
#include "export/target_size.h"
#include "infer/imatrix_collect.h"
#include "io/hf_folder.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kTargetHelp =
    "usage: quantzoo-cli export MODEL --format gguf (--target-size SIZE | --target-bpw X)\n"
    "                           (--imatrix FILE | --calib TEXT) [-o OUT.gguf] [options]\n"
    "  Chooses every quantizable tensor's type (IQ1_S .. Q8_0, F16) for the least predicted loss within\n"
    "  the size: the importance-weighted squared error of each tensor under each type, relative to the\n"
    "  tensor's weighted energy and scaled per tensor role (calibrated to KL-divergence).\n"
    "  --target-size SIZE   the whole file: 4.5G, 700M, 700MB (powers of 1000), 3GiB, 512MiB (of 1024), "
    "bytes\n"
    "  --target-bpw X       or tensor data bits per weight (as the export prints them)\n"
    "  --imatrix FILE       importance matrix (llama-imatrix GGUF or legacy .dat)\n"
    "  --calib TEXT         or collect one from this text first (as 'quantzoo-cli imatrix', output layer\n"
    "                       included), -c N tokens per chunk (default 512), --chunks K (default all)\n"
    "  --sample-rows N      rows per tensor measured for the prediction (default 256; 0 = all)\n"
    "  --kld-text TEXT      calibrate every tensor's weight by measurement instead of its role: the model's\n"
    "                       KL-divergence on TEXT with that tensor alone at Q3_K (one evaluation per "
    "tensor;\n"
    "                       llama, mistral, qwen2, gpt2); --kld-ctx N (default 128), --kld-chunks K (default "
    "8)\n"
    "  --split-max-size N(M|G), --split-max-tensors N, --override-kv KEY=TYPE:VALUE   as for the plain\n"
    "                       GGUF export (gguf-split parts; metadata overrides)\n"
    "  --threads T          worker threads (default all cores)\n"
    "  -o, --output         output file (default: MODEL.target.gguf beside the model)\n"
    "  --dry-run            print the plan (type, bytes and predicted loss per tensor; the standard mixes\n"
    "                       on the same prediction), write nothing\n"
    "  --quiet              no progress line\n";

std::string mib(uint64_t b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / 1048576.0);
    return buf;
}

std::string defaultTargetOutput(const std::string& model) {
    std::string base = model;
    while (base.size() > 1 && base.back() == '/')
        base.pop_back();
    if (base.size() > 5 && base.compare(base.size() - 5, 5, ".gguf") == 0) base.resize(base.size() - 5);
    return base + ".target.gguf";
}

int fail(const qz::Error& e) {
    std::fprintf(stderr, "quantzoo-cli: %s\n", e.message.c_str());
    return e.cancelled ? kCancelled : kFailed;
}
} // namespace

bool exportWantsTarget(int argc, char** argv) {
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--target-size", 0) == 0 || a.rfind("--target-bpw", 0) == 0) return true;
    }
    return false;
}

int cmdExportTarget(int argc, char** argv) {
    Args args({"--format", "--target-size", "--target-bpw", "--imatrix", "--calib", "-c", "--chunks",
               "--sample-rows", "--threads", "-o", "--output", "--kld-text", "--kld-ctx", "--kld-chunks",
               "--override-kv", "--split-max-size", "--split-max-tensors"},
              {"--dry-run", "--quiet", "--help"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli export: %s\n%s", e.c_str(), kTargetHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kTargetHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usageError("expected one MODEL");
    if (args.valueOr("--format", "gguf") != "gguf")
        return usageError("--target-size and --target-bpw are for --format gguf");
    if (args.has("--target-size") == args.has("--target-bpw"))
        return usageError("give --target-size or --target-bpw");
    if (args.has("--imatrix") == args.has("--calib"))
        return usageError("give --imatrix FILE or --calib TEXT");
    if (args.has("-o") && args.has("--output")) return usageError("give -o or --output, not both");
    std::string err;
    qz::TargetSpec spec;
    if (args.has("--target-size")) {
        auto b = qz::parseByteSize(*args.value("--target-size"));
        if (!b)
            return usageError("--target-size: cannot read '" + *args.value("--target-size") + "' as a size");
        spec.fileBytes = *b;
    } else {
        spec.bitsPerWeight = args.doubleOr("--target-bpw", 0, err);
        if (err.empty() && !(spec.bitsPerWeight > 0 && spec.bitsPerWeight < 64))
            err = "--target-bpw must be between 0 and 64";
    }
    qz::SensitivityParams sp;
    sp.sampleRows = args.intOr("--sample-rows", 256, err);
    sp.threads = static_cast<int>(args.intOr("--threads", 0, err));
    sp.kldCtx = static_cast<int>(args.intOr("--kld-ctx", 128, err));
    sp.kldChunks = static_cast<int>(args.intOr("--kld-chunks", 8, err));
    const int nCtx = static_cast<int>(args.intOr("-c", 512, err));
    const int nChunks = static_cast<int>(args.intOr("--chunks", -1, err));
    if (!err.empty()) return usageError(err);
    if (sp.sampleRows < 0) return usageError("--sample-rows must be 0 or more");
    if (nCtx < 2 || nCtx > 1 << 20) return usageError("-c must be at least 2");
    qz::GgufExportParams base;  // gguf-split parts and metadata overrides, as for the plain export
    if (auto e = splitAndKvOptions(args, base); !e.empty()) return usageError(e);
    if (sp.kldCtx < 4 || sp.kldCtx > 1 << 20 || sp.kldCtx % 2)
        return usageError("--kld-ctx must be even and at least 4");
    if (sp.kldChunks < 1) return usageError("--kld-chunks must be at least 1");

    const bool dryRun = args.has("--dry-run"), quiet = args.has("--quiet");
    const std::string output =
        args.valueOr("-o", args.valueOr("--output", defaultTargetOutput(args.positional()[0])));
    auto model = qz::openModel(args.positional()[0]);
    if (!model) return fail(model.error());
    if (!dryRun)
        if (auto st = qz::refuseOverwritingModel(**model, output); !st) return fail(st.error());

    // The importance matrix: given, or collected from the calibration text into a temporary folder.
    std::filesystem::path tmpDir;
    struct Cleanup {
        std::filesystem::path& dir;
        ~Cleanup() {
            std::error_code ec;
            if (!dir.empty()) std::filesystem::remove_all(dir, ec);
        }
    } cleanup{tmpDir};
    if (args.has("--imatrix")) {
        sp.imatrixPath = *args.value("--imatrix");
    } else {
        auto text = qz::readRegularFile(*args.value("--calib"), kMaxTextBytes, [] { return interrupted(); });
        if (!text) return fail(text.error());
        qz::ImatrixParams ip;
        ip.nCtx = nCtx;
        ip.nChunks = nChunks;
        ip.threads = sp.threads;
        ip.processOutput = true; // the output layer's columns weigh its error too
        ip.datasetName = *args.value("--calib");
        ProgressLine line("imatrix", quiet);
        auto im = qz::computeImatrix(**model, *text, ip, line.callback());
        line.finish();
        if (!im) return fail(im.error());
        tmpDir = std::filesystem::temp_directory_path() / ("quantzoo-target-" + std::to_string(::getpid()));
        std::error_code ec;
        std::filesystem::create_directories(tmpDir, ec);
        if (ec) return fail(qz::makeError("cannot create " + tmpDir.string() + ": " + ec.message()));
        sp.imatrixPath = (tmpDir / "imatrix.gguf").string();
        if (auto st = qz::writeImatrixGguf(*im, sp.imatrixPath); !st) return fail(st.error());
    }

    if (auto kt = args.value("--kld-text")) {
        auto text = qz::readRegularFile(*kt, kMaxTextBytes, [] { return interrupted(); });
        if (!text) return fail(text.error());
        sp.kldText = std::move(*text);
    }
    ProgressLine sline("sensitivity", quiet);
    auto table = qz::runGuarded([&] { return qz::measureSensitivity(**model, sp, sline.callback()); });
    sline.finish();
    if (!table) return fail(table.error());
    auto plan = qz::chooseTargetPlan(*table, spec);
    if (!plan) return fail(plan.error());

    if (dryRun) {
        const bool measured = !sp.kldText.empty();
        std::printf("%-40s %-8s %12s  %s\n", "tensor", "type", "bytes",
                    measured ? "predicted loss  (measured KLD of the tensor alone at the reference type)"
                             : "predicted loss");
        for (size_t i = 0; i < plan->tensors.size(); ++i) {
            const auto& t = plan->tensors[i];
            const auto& tt = table->tensors[i];
            if (t.chosen && measured && tt.measuredKld >= 0)
                std::printf("%-40s %-8s %12llu  %.4e  (%.4e at %s)\n", t.name.c_str(),
                            std::string(qz::dtypeName(t.type)).c_str(),
                            static_cast<unsigned long long>(t.bytes), t.loss, tt.measuredKld,
                            std::string(qz::dtypeName(tt.kldType)).c_str());
            else if (t.chosen)
                std::printf("%-40s %-8s %12llu  %.4e\n", t.name.c_str(),
                            std::string(qz::dtypeName(t.type)).c_str(),
                            static_cast<unsigned long long>(t.bytes), t.loss);
            else
                std::printf("%-40s %-8s %12llu  (kept)\n", t.name.c_str(),
                            std::string(qz::dtypeName(t.type)).c_str(),
                            static_cast<unsigned long long>(t.bytes));
        }
        auto mixes = qz::standardMixPoints(**model, *table);
        if (mixes) {
            std::printf("standard mixes on the same prediction:\n");
            for (const auto& m : *mixes)
                std::printf("  %-8s %12llu bytes %7.4f bpw  predicted loss %.4e\n", m.name.c_str(),
                            static_cast<unsigned long long>(m.fileBytes), m.bitsPerWeight, m.predictedLoss);
        }
    }
    const std::string what =
        spec.fileBytes ? *args.value("--target-size") : *args.value("--target-bpw") + " bpw";
    std::printf("target %s: %llu bytes (%s), %.4f bits per weight, predicted loss %.4e (no plan in the "
                "budget below %.4e)\n",
                what.c_str(), static_cast<unsigned long long>(plan->fileBytes), mib(plan->fileBytes).c_str(),
                plan->bitsPerWeight, plan->predictedLoss, plan->lowerBound);
    if (dryRun) return kOk;

    base.outputPath = output;
    base.threads = sp.threads;
    const qz::GgufExportParams p = qz::targetExportParams(*plan, *table, base);
    ProgressLine line("export", quiet);
    auto result = qz::runGuarded([&] { return qz::exportGguf(**model, p, line.callback()); });
    line.finish();
    if (!result) return fail(result.error());
    for (const auto& n : result->notes)
        std::fprintf(stderr, "note: %s\n", n.c_str());
    std::fprintf(stderr, "wrote %s: %zu tensors, %llu bytes (%s), %.4f bits per weight\n",
                 result->path.c_str(), result->tensors.size(),
                 static_cast<unsigned long long>(result->fileBytes), mib(result->fileBytes).c_str(),
                 result->bitsPerWeight);
    if (result->fileBytes != plan->fileBytes)
        std::fprintf(stderr, "note: the file has %llu bytes, the plan predicted %llu\n",
                     static_cast<unsigned long long>(result->fileBytes),
                     static_cast<unsigned long long>(plan->fileBytes));
    return kOk;
}

} // namespace qzcli

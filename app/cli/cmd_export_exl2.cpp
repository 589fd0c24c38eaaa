// quantzoo-cli export MODEL --format exl2 ...: EXL2 export (core/exl2/exl2_export.h): measurement (or a
// given measurement.json), optimization to a target bpw, quantization, an exllamav2-loadable folder.
#include <algorithm>
#include <cstdio>
#include <string>

#include "args.h"
#include "commands.h"
#include "exl2/exl2_export.h"
#include "infer/hparams.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "io/safetensors_writer.h"
#include "model/model.h"
#include "calibrated_export_util.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kHelp =
    "usage: quantzoo-cli export MODEL --format exl2 --bpw 5.0 --calib TEXT -o OUTDIR [options]\n"
    "  MODEL              a Hugging Face folder (llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, gemma2,\n"
    "                     phi3: the architectures exllamav2 0.3.2 converts)\n"
    "  --bpw F            target bits per weight over the decoder's linear layers, 2.0..8.5 (default 5.0)\n"
    "  --head-bits N      lm_head setting: 2, 3, 4, 5, 6 (default) or 8\n"
    "  --calib TEXT       calibration text file\n"
    "  --measurement FILE reuse this measurement.json (exllamav2's format) instead of measuring\n"
    "  --measure-rows N   measurement rows (default 16)\n"
    "  --measure-len L    tokens per measurement row (default min(2048, the model's context))\n"
    "  --rows N           quantization rows (default 100)\n"
    "  --len L            tokens per quantization row (default min(2048, the model's context))\n"
    "  --seed S           calibration rows' and optimizer's seed (default 0)\n"
    "  --anneal-iterations N  proposals per temperature of each annealing run (default 1000, exllamav2's)\n"
    "  --state-type T     f32 (default, exact), f16 or bf16: the calibration rows' hidden states carried\n"
    "                     from module to module (rows x len x hidden x 4 or 2 bytes, held once)\n"
    "  --max-memory BYTES keep the carried states in a temporary file beside OUTDIR when larger\n"
    "  --no-resume        ignore an interrupted measurement left for the same OUTDIR\n"
    "  --shard-size MB    maximum MiB of tensors per output-*.safetensors shard (default 8192)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --eval TEXT        print perplexities (original, EXL2) on TEXT through our engine\n"
    "  --ctx N            perplexity context (default 512, at most the model context)\n"
    "  --chunks N         perplexity chunks (default: all)\n"
    "  --dump-dequant F   (tests) write the dequantized weights as F32 safetensors file F\n"
    "  --quiet            no per-layer log and no progress line\n"
    "  -o, --output DIR   output folder (must not exist, or be empty)\n"
    "An interrupted measurement (Ctrl-C, failure) keeps its finished modules in OUTDIR's hidden\n"
    "'.NAME.exl2-partial' folder; running the same command again resumes from there.\n";

int fail(const std::string& msg) {
    std::fprintf(stderr, "quantzoo-cli: %s\n", msg.c_str());
    return kFailed;
}

} // namespace

int cmdExportExl2(int argc, char** argv) {
    Args args({"--format", "--bpw", "--head-bits", "--calib", "--measurement", "--measure-rows",
               "--measure-len", "--rows", "--len", "--seed", "--anneal-iterations", "--shard-size",
               "--threads", "--eval", "--ctx", "--chunks", "--dump-dequant", "-o", "--output", "--state-type",
               "--max-memory"},
              {"--no-resume", "--quiet", "--help"});
    auto usage = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli export: %s\n%s", e.c_str(), kHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usage(err);
    if (args.has("--help")) {
        std::fputs(kHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usage("expected one MODEL");
    if (args.valueOr("--format", "exl2") != "exl2") return usage("this command handles --format exl2");
    if (args.has("-o") && args.has("--output")) return usage("give -o or --output, not both");
    const std::string out = args.valueOr("-o", args.valueOr("--output", ""));
    if (out.empty()) return usage("-o OUTDIR is required");

    std::string err;
    qz::exl2::ExportParams p;
    p.targetBpw = args.doubleOr("--bpw", 5.0, err);
    p.headBits = static_cast<int>(args.intOr("--head-bits", 6, err));
    p.calibPath = args.valueOr("--calib", "");
    p.measurementPath = args.valueOr("--measurement", "");
    p.measureCalib.samples = static_cast<int>(args.intOr("--measure-rows", 16, err));
    p.quantCalib.samples = static_cast<int>(args.intOr("--rows", 100, err));
    const long long mlen = args.intOr("--measure-len", -1, err), qlen = args.intOr("--len", -1, err);
    const long long seed = args.intOr("--seed", 0, err);
    p.annealIterations = static_cast<int>(args.intOr("--anneal-iterations", 1000, err));
    p.seed = static_cast<uint64_t>(seed);
    p.measureCalib.seed = p.quantCalib.seed = static_cast<uint64_t>(seed);
    p.outputDir = out;
    p.resume = !args.has("--no-resume");
    p.threads = static_cast<int>(args.intOr("--threads", 0, err));
    const long long shardMb = args.intOr("--shard-size", 8192, err);
    const long long maxMemory = args.intOr("--max-memory", 0, err);
    const auto stateType = qz::calib::parseStateType(args.valueOr("--state-type", "f32"));
    if (!stateType) return usage("--state-type must be f32, f16 or bf16");
    if (maxMemory < 0) return usage("--max-memory must not be negative");
    p.stateType = *stateType;
    p.maxStateMemory = static_cast<uint64_t>(maxMemory);
    const int ctx = static_cast<int>(args.intOr("--ctx", 512, err));
    const int chunks = static_cast<int>(args.intOr("--chunks", -1, err));
    if (!err.empty()) return usage(err);
    if (!(p.targetBpw >= 2.0 && p.targetBpw <= 8.5)) return usage("--bpw must be in 2.0..8.5");
    if (p.headBits < 2 || p.headBits > 8 || p.headBits == 7)
        return usage("--head-bits must be 2, 3, 4, 5, 6 or 8");
    if (p.calibPath.empty()) return usage("--calib TEXT is required");
    if (p.measureCalib.samples <= 0 || p.quantCalib.samples <= 0)
        return usage("--rows and --measure-rows must be positive");
    if ((args.has("--measure-len") && mlen <= 0) || (args.has("--len") && qlen <= 0))
        return usage("--len and --measure-len must be positive");
    if (shardMb <= 0) return usage("--shard-size must be positive");
    if (p.annealIterations < 1 || p.annealIterations > 1'000'000)
        return usage("--anneal-iterations must be 1..1000000");
    p.maxShardBytes = static_cast<uint64_t>(shardMb) * 1024 * 1024;
    const std::string evalPath = args.valueOr("--eval", "");
    const std::string dumpPath = args.valueOr("--dump-dequant", "");
    p.keepOverrides = !evalPath.empty() || !dumpPath.empty();

    auto model = qz::openModel(args.positional()[0]);
    if (!model) return fail(model.error().message);
    int defLen = 2048;
    if (auto hp = qz::readInferHParams(**model); hp && hp->nCtxTrain > 0)
        defLen = std::min(2048, hp->nCtxTrain);
    p.measureCalib.seqLen = mlen > 0 ? static_cast<int>(mlen) : defLen;
    p.quantCalib.seqLen = qlen > 0 ? static_cast<int>(qlen) : defLen;

    const bool quiet = args.has("--quiet");
    installInterruptHandler();
    ProgressLine line("exl2", quiet);
    auto onLayer = [&](const qz::exl2::LayerReport& r) {
        if (quiet) return;
        line.finish();
        std::fprintf(stderr, "%-44s [%5d x %5d]  %-40s %6.3f bpw  rel.err %.6f  %.2fs\n", r.name.c_str(),
                     r.out, r.in, r.setting.c_str(), r.bpw, r.relErr, r.seconds);
    };
    auto res = qz::exl2::exportExl2(**model, p, line.callback(), onLayer);
    line.finish();
    if (!res) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", res.error().message.c_str());
        return res.error().cancelled || interrupted() ? kCancelled : kFailed;
    }
    if (res->measurementReused)
        std::printf("measurement: reused %s\n", p.measurementPath.c_str());
    else
        std::printf("measurement: %d modules measured, %d resumed, %.1fs\n", res->measuredModules,
                    res->resumedModules, res->measureSeconds);
    std::printf("target %.4f bpw, achieved %.4f bpw over the decoder linears; lm_head %.4f bpw\n",
                res->targetBpw, res->achievedBpw, res->headBpw);
    if (res->calibPplRows > 0)
        std::printf("calibration perplexity (%d rows x %d tokens): base %.4f, quantized %.4f\n",
                    res->calibPplRows, p.quantCalib.seqLen, res->calibPplBase, res->calibPplQuant);
    std::printf(
        "wrote %s: %zu files, %.2f MiB of tensors, %zu layers, %.1fs (optimize %.1fs, quantize %.1fs)\n",
        res->outputDir.c_str(), res->files.size(), static_cast<double>(res->tensorBytes) / 1048576.0,
        res->layers.size(), res->seconds, res->optimizeSeconds, res->quantizeSeconds);
    if (res->stateBytes > 0)
        std::printf("carried hidden states (%s): %.2f MiB %s\n", qz::calib::stateTypeName(p.stateType),
                    static_cast<double>(res->stateBytes) / 1048576.0,
                    res->statesSpilled ? "in a temporary file" : "in memory");
    if (!dumpPath.empty())
        if (auto s = dumpDequant(dumpPath, res->overrides, **model); !s) return fail(s.error().message);

    if (!evalPath.empty()) {
        if (int rc = printPerplexities(**model, evalPath, ctx, chunks, p.threads, quiet,
                                       {{"original", nullptr}, {"exl2", &res->overrides}});
            rc != kOk)
            return rc;
    }
    return kOk;
}

} // namespace qzcli

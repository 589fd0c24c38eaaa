// quantzoo-cli export MODEL --format gptq ...: GPTQ (or RTN) checkpoint export (core/gptq/gptq_export.h).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "args.h"
#include "common/file_util.h"
#include "commands.h"
#include "gptq/gptq_export.h"
#include "variants/gptq_reader.h"
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
    "usage: quantzoo-cli export MODEL --format gptq --calib TEXT -o OUTDIR [options]\n"
    "  MODEL              a Hugging Face folder (llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, gemma2,\n"
    "                     gemma3, phi3, gpt2)\n"
    "  --bits N           2, 3, 4 (default) or 8\n"
    "  --group-size N     -1, 32, 64, 128 (default) or any positive size\n"
    "  --sym | --asym     symmetric (default) or asymmetric zero points\n"
    "  --desc-act         act-order (columns by decreasing Hessian diagonal; g_idx)\n"
    "  --static-groups    group parameters from the unmodified weights\n"
    "  --damp F           dampening fraction of mean(diag H) (default 0.01)\n"
    "  --calib TEXT       calibration text file\n"
    "  --samples N        calibration windows (default 128)\n"
    "  --seq-len L        tokens per window (default min(512, the model's context))\n"
    "  --seed S           window seed (default 0)\n"
    "  --no-true-sequential  one calibration pass per block instead of one per layer group\n"
    "  --rtn              also compute the round-to-nearest baseline (errors and, with --eval, perplexity)\n"
    "  --rtn-only         export the round-to-nearest baseline instead of GPTQ (no calibration: --calib\n"
    "                     is not read and no output errors are reported)\n"
    "  --state-type T     f32 (default, exact), f16 or bf16: the calibration windows' hidden states\n"
    "                     carried from layer to layer (windows x seq-len x hidden x 4 or 2 bytes)\n"
    "  --expert-min-tokens N  mixture of experts: an expert's layer with fewer routed calibration tokens\n"
    "                     is quantized on the layer's averaged expert Hessian (default: 4 x its input columns)\n"
    "  --report FILE      write a JSON report (per layer: errors, routed tokens, fallback; totals)\n"
    "  --max-memory BYTES keep the carried states in a temporary file beside OUTDIR when larger, and\n"
    "                     observe at most BYTES of Hessians per calibration pass (a mixture of experts:\n"
    "                     its experts in chunks, one pass each; the result is the same)\n"
    "  --no-resume        ignore a partial run left by an interrupted export to the same OUTDIR\n"
    "  --shard-size BYTES maximum tensor bytes per safetensors shard (default 5000000000)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --eval TEXT        print perplexities (original, GPTQ, RTN) on TEXT through our engine; the export is\n"
    "                     read back from the written folder one decoder block at a time\n"
    "  --ctx N            perplexity context (default 512, at most the model context)\n"
    "  --chunks N         perplexity chunks (default: all)\n"
    "  --dump-dequant F   (tests) write the dequantized weights as F32 safetensors file F\n"
    "  --quiet            no per-layer log and no progress line\n"
    "  -o, --output DIR   output folder (must not exist, or be empty)\n"
    "An interrupted export (Ctrl-C, failure) keeps its finished layers in OUTDIR's hidden\n"
    "'.NAME.gptq-partial' folder; running the same command again resumes from there.\n";

// The export's figures as JSON: totals (layers, resumed, passes, experts that fell back) and per layer.
qz::Status writeGptqReport(const std::string& path, const qz::gptq::ExportParams& p, const qz::gptq::ExportResult& r) {
    nlohmann::ordered_json j;
    j["output"] = r.outputDir;
    j["method"] = p.method == qz::gptq::Method::Gptq ? "gptq" : "rtn";
    j["bits"] = p.quant.bits;
    j["group_size"] = p.quant.groupSize;
    j["layers"] = r.layers.size();
    j["resumed_layers"] = r.resumedLayers;
    j["calibration_passes"] = r.calibrationPasses;
    j["carry_passes"] = r.carryPasses;
    int expertLayers = 0;
    std::set<std::pair<int, int>> experts;
    for (const auto& l : r.layers)
        if (l.expert >= 0) {
            ++expertLayers;
            experts.insert({l.block, l.expert});
        }
    j["experts"] = experts.size();
    j["expert_layers"] = expertLayers;
    j["expert_min_tokens"] = p.expertMinTokens;  // -1: 4 x each layer's input columns
    j["experts_fallback"] = r.expertsFallback;
    j["expert_layers_fallback"] = r.expertLayersFallback;
    j["hessian_chunks"] = r.hessianChunks;
    j["peak_hessian_bytes"] = r.peakHessianBytes;
    j["seconds"] = r.seconds;
    auto& arr = j["layer_reports"] = nlohmann::ordered_json::array();
    for (const auto& l : r.layers) {
        nlohmann::ordered_json e;
        e["name"] = l.name;
        e["block"] = l.block;
        e["group"] = l.group;
        e["out"] = l.out;
        e["in"] = l.in;
        e["loss"] = l.loss;
        e["rel_err"] = l.relErr;
        e["rel_err_rtn"] = l.relErrRtn;
        e["resumed"] = l.resumed;
        if (l.expert >= 0) {
            e["expert"] = l.expert;
            e["tokens"] = l.tokens;
            e["fallback"] = l.fallback;
        }
        arr.push_back(std::move(e));
    }
    return qz::writeFileAtomic(path, j.dump(2) + "\n");
}

int fail(const std::string& msg) {
    std::fprintf(stderr, "quantzoo-cli: %s\n", msg.c_str());
    return kFailed;
}

}  // namespace

int cmdExportGptq(int argc, char** argv) {
    Args args({"--format", "--bits", "--group-size", "--damp", "--calib", "--samples", "--seq-len", "--seed",
               "--shard-size", "--threads", "--state-type", "--max-memory", "--eval", "--ctx", "--chunks",
               "--dump-dequant", "--expert-min-tokens", "--report", "-o", "--output"},
              {"--sym", "--asym", "--desc-act", "--static-groups", "--no-true-sequential", "--rtn",
               "--rtn-only", "--no-resume", "--quiet", "--help"});
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
    if (args.valueOr("--format", "gptq") != "gptq") return usage("this command handles --format gptq");
    if (args.has("--sym") && args.has("--asym")) return usage("give --sym or --asym, not both");
    if (args.has("-o") && args.has("--output")) return usage("give -o or --output, not both");
    const std::string out = args.valueOr("-o", args.valueOr("--output", ""));
    if (out.empty()) return usage("-o OUTDIR is required");

    std::string err;
    qz::gptq::ExportParams p;
    p.quant.bits = static_cast<int>(args.intOr("--bits", 4, err));
    p.quant.groupSize = static_cast<int>(args.intOr("--group-size", 128, err));
    p.quant.sym = !args.has("--asym");
    p.quant.descAct = args.has("--desc-act");
    p.quant.staticGroups = args.has("--static-groups");
    p.quant.dampPercent = args.doubleOr("--damp", 0.01, err);
    p.quant.threads = static_cast<int>(args.intOr("--threads", 0, err));
    p.trueSequential = !args.has("--no-true-sequential");
    p.method = args.has("--rtn-only") ? qz::gptq::Method::Rtn : qz::gptq::Method::Gptq;
    p.rtnBaseline = args.has("--rtn") || args.has("--rtn-only");
    p.calibPath = args.valueOr("--calib", "");
    p.calib.samples = static_cast<int>(args.intOr("--samples", 128, err));
    p.calib.seqLen = static_cast<int>(args.intOr("--seq-len", 512, err));
    p.calib.seed = static_cast<uint64_t>(args.intOr("--seed", 0, err));
    p.outputDir = out;
    p.resume = !args.has("--no-resume");
    const long long shard = args.intOr("--shard-size", 5'000'000'000LL, err);
    const long long maxMemory = args.intOr("--max-memory", 0, err);
    const std::string stateType = args.valueOr("--state-type", "f32");
    if (stateType == "f32")
        p.stateType = qz::gptq::StateType::F32;
    else if (stateType == "f16")
        p.stateType = qz::gptq::StateType::F16;
    else if (stateType == "bf16")
        p.stateType = qz::gptq::StateType::BF16;
    else
        return usage("--state-type must be f32, f16 or bf16");
    if (maxMemory < 0) return usage("--max-memory must not be negative");
    p.maxStateMemory = static_cast<uint64_t>(maxMemory);
    p.maxHessianMemory = static_cast<uint64_t>(maxMemory);
    p.expertMinTokens = args.intOr("--expert-min-tokens", -1, err);
    if (args.has("--expert-min-tokens") && p.expertMinTokens < 0) return usage("--expert-min-tokens must not be negative");
    const std::string reportPath = args.valueOr("--report", "");
    const int ctx = static_cast<int>(args.intOr("--ctx", 512, err));
    const int chunks = static_cast<int>(args.intOr("--chunks", -1, err));
    if (!err.empty()) return usage(err);
    if (shard <= 0) return usage("--shard-size must be positive");
    p.maxShardBytes = static_cast<uint64_t>(shard);
    if (auto s = qz::gptq::validateConfig(p.quant); !s) return usage(s.error().message);
    if (p.method == qz::gptq::Method::Gptq && p.calibPath.empty()) return usage("--calib TEXT is required for GPTQ");
    if (p.method == qz::gptq::Method::Rtn && !p.calibPath.empty() && !args.has("--quiet"))
        std::fprintf(stderr,
                     "note: --rtn-only needs no calibration; --calib is not used (no output errors)\n");
    const std::string evalPath = args.valueOr("--eval", "");
    const std::string dumpPath = args.valueOr("--dump-dequant", "");
    p.keepOverrides = !dumpPath.empty();  // --eval reads the written checkpoint back, one block at a time

    auto model = qz::openModel(args.positional()[0]);
    if (!model) return fail(model.error().message);
    if (!args.has("--seq-len"))
        if (auto hp = qz::readInferHParams(**model); hp && hp->nCtxTrain > 0) p.calib.seqLen = std::min(512, hp->nCtxTrain);
    const bool quiet = args.has("--quiet");
    installInterruptHandler();
    ProgressLine line("gptq", quiet);
    auto onLayer = [&](const qz::gptq::LayerReport& r) {
        if (quiet) return;
        line.finish();
        char rtn[32] = "";
        if (r.relErrRtn >= 0) std::snprintf(rtn, sizeof rtn, "  rtn %.6f", r.relErrRtn);
        char routed[80] = "";
        if (r.tokens >= 0)
            std::snprintf(routed, sizeof routed, "  %lld tokens%s", static_cast<long long>(r.tokens),
                          r.fallback ? " (averaged expert Hessian)" : "");
        std::fprintf(stderr, "[blk %2d] %-44s [%5d x %5d]  loss %12.4f  rel.err %.6f%s  %.2fs%s%s\n", r.block,
                     r.name.c_str(), r.out, r.in, r.loss, r.relErr, rtn, r.seconds, routed,
                     r.resumed ? "  (resumed)" : "");
    };
    auto res = qz::gptq::exportGptq(**model, p, line.callback(), onLayer);
    line.finish();
    if (!res) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", res.error().message.c_str());
        return res.error().cancelled || interrupted() ? kCancelled : kFailed;
    }
    double sumG = 0, sumR = 0;
    int n = 0;
    for (const auto& l : res->layers)
        if (l.relErr >= 0) {
            sumG += l.relErr;
            sumR += l.relErrRtn;
            ++n;
        }
    std::printf("wrote %s: %zu files, %.2f MiB of tensors, %zu layers (%d resumed), %d calibration passes "
                "+ %d carry passes, %.1fs\n",
                res->outputDir.c_str(), res->files.size(), static_cast<double>(res->tensorBytes) / 1048576.0,
                res->layers.size(), res->resumedLayers, res->calibrationPasses, res->carryPasses,
                res->seconds);
    if (res->calibSeconds > 0 || res->quantSeconds > 0)
        std::printf("gptq time: calibration forward %.1f s wall, %.1f s CPU; quantization %.1f s wall, %.1f s CPU\n",
                    res->calibSeconds, res->calibCpuSeconds, res->quantSeconds, res->quantCpuSeconds);
    if (res->stateBytes > 0)
        std::printf("carried hidden states: %d x %d x hidden, %s: %.2f MiB %s\n", p.calib.samples,
                    p.calib.seqLen, qz::gptq::stateTypeName(p.stateType),
                    static_cast<double>(res->stateBytes) / 1048576.0,
                    res->statesSpilled ? "in a temporary file" : "in memory");
    if (res->peakHessianBytes > 0)
        std::printf("memory: Hessians of one calibration pass at most %.2f MiB (%s)\n",
                    static_cast<double>(res->peakHessianBytes) / 1048576.0,
                    res->hessianChunks > 1 ? ("a layer group in up to " + std::to_string(res->hessianChunks) +
                                              " chunks, --max-memory")
                                                 .c_str()
                                           : "each layer group in one pass");
    int expertLayers = 0;
    std::set<std::pair<int, int>> experts;
    for (const auto& l : res->layers)
        if (l.expert >= 0) {
            ++expertLayers;
            experts.insert({l.block, l.expert});
        }
    if (!experts.empty() && p.method == qz::gptq::Method::Gptq)
        std::printf("experts: %d of %zu fell back to the averaged expert Hessian (%d of %d expert layers had fewer "
                    "routed tokens than %s)\n",
                    res->expertsFallback, experts.size(), res->expertLayersFallback, expertLayers,
                    p.expertMinTokens >= 0 ? std::to_string(p.expertMinTokens).c_str() : "4 x their input columns");
    if (!reportPath.empty())
        if (auto s = writeGptqReport(reportPath, p, *res); !s) return fail(s.error().message);
    if (n > 0) {
        std::printf("mean relative output error: %s %.6f", p.method == qz::gptq::Method::Gptq ? "gptq" : "rtn", sumG / n);
        if (p.rtnBaseline && p.method == qz::gptq::Method::Gptq) std::printf("  rtn %.6f", sumR / n);
        std::printf("\n");
    }
    if (!dumpPath.empty())
        if (auto s = dumpDequant(dumpPath, res->overrides, **model); !s) return fail(s.error().message);

    if (!evalPath.empty()) {
        // The exported variant is evaluated from what was written (the folder read back one decoder block
        // at a time), the RTN baseline from the original weights one block at a time: memory of one block.
        auto folder = qz::openGptqFolder(res->outputDir);
        if (!folder) return fail(folder.error().message);
        auto plan = qz::gptq::planLayers(**model);
        if (!plan) return fail(plan.error().message);
        auto fromFolder = [&](int b) { return qz::readGptqBlock(*folder, *plan, b); };
        std::vector<EvalVariant> variants = {{"original", nullptr},
                                             {p.method == qz::gptq::Method::Gptq ? "gptq" : "rtn", nullptr, fromFolder}};
        if (p.rtnBaseline && p.method == qz::gptq::Method::Gptq)
            variants.push_back({"rtn", nullptr, [&](int b) { return qz::gptq::rtnBlockWeights(**model, *plan, b, p.quant); }});
        if (int rc = printPerplexities(**model, evalPath, ctx, chunks, p.quant.threads, quiet, variants,
                                       p.maxStateMemory);
            rc != kOk)
            return rc;
    }
    return kOk;
}

}  // namespace qzcli

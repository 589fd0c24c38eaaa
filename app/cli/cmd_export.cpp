#include <cstdio>
#include <string>

#include "args.h"
#include "commands.h"
#include "export/gguf_export.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kExportHelp =
    "usage: quantzoo-cli export MODEL --format gguf --type TYPE -o OUT.gguf [options]\n"
    "  (--format gptq / exl2: see 'quantzoo-cli export --format gptq --help', '... --format exl2 --help')\n"
    "  MODEL        a Hugging Face folder (llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, gemma2, gemma3,\n"
    "               phi3, gpt2) or a GGUF file to re-quantize\n"
    "  --type       F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M\n"
    "               Q5_K_S Q5_K_M Q6_K (also Q4_K = Q4_K_M, Q3_K = Q3_K_M, Q5_K = Q5_K_M)\n"
    "  -o, --output output file (default: MODEL.TYPE.gguf beside the model)\n"
    "  llama-quantize's options:\n"
    "  --imatrix FILE                importance matrix (llama-imatrix GGUF or legacy .dat)\n"
    "  --tensor-type REGEX=TYPE      per-tensor type, first match wins (repeatable)\n"
    "  --output-tensor-type TYPE     type of output.weight\n"
    "  --token-embedding-type TYPE   type of token_embd.weight\n"
    "  --pure                        no mix rules: the default type for every quantizable tensor\n"
    "  --override-kv KEY=TYPE:VALUE  set a metadata key, TYPE int (UINT32), float, bool or str (repeatable)\n"
    "  gguf-split's options (files OUT-00001-of-0000N.gguf; llama.cpp loads the first as the model):\n"
    "  --split-max-size N(M|G)       at most N megabytes / gigabytes (10^6 / 10^9) of tensor data per file\n"
    "  --split-max-tensors N         at most N tensors per file\n"
    "  --dry-run                     print the planned type and size of every tensor, write nothing\n"
    "  --quiet                       no per-tensor log and no progress line\n"
    "  the file that fits a size: --target-size SIZE or --target-bpw X (see 'export --target-size 1 --help')\n";

std::string mib(uint64_t b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / 1048576.0);
    return buf;
}

std::string neString(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}


std::string defaultOutput(const std::string& model, const std::string& type) {
    std::string base = model;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    if (base.size() > 5 && base.compare(base.size() - 5, 5, ".gguf") == 0) base.resize(base.size() - 5);
    return base + "." + type + ".gguf";
}
}  // namespace

// --override-kv, --split-max-size, --split-max-tensors into p; an error message or "".
std::string splitAndKvOptions(const Args& args, qz::GgufExportParams& p) {
    for (const auto& spec : args.values("--override-kv")) {
        auto o = qz::parseGgufKvOverride(spec);
        if (!o) return o.error().message;
        p.kvOverrides.push_back(std::move(*o));
    }
    if (args.has("--split-max-size") && args.has("--split-max-tensors"))
        return "give --split-max-size or --split-max-tensors, not both";
    if (auto v = args.value("--split-max-size")) {
        auto n = qz::parseGgufSplitSize(*v);
        if (!n) return n.error().message;
        p.splitMaxBytes = *n;
    }
    if (args.has("--split-max-tensors")) {
        std::string err;
        const long long n = args.intOr("--split-max-tensors", 0, err);
        if (!err.empty()) return err;
        if (n < 1 || n > 2147483647) return "--split-max-tensors must be at least 1";
        p.splitMaxTensors = static_cast<int>(n);
    }
    return {};
}

int cmdExport(int argc, char** argv) {
    for (int i = 2; i + 1 < argc; ++i) {  // other formats parse their own options
        if (std::string(argv[i]) == "--format" && std::string(argv[i + 1]) == "gptq") return cmdExportGptq(argc, argv);
        if (std::string(argv[i]) == "--format" && std::string(argv[i + 1]) == "exl2") return cmdExportExl2(argc, argv);
    }
    if (exportWantsTarget(argc, argv)) return cmdExportTarget(argc, argv);
    Args args({"--format", "--type", "-o", "--output", "--imatrix", "--tensor-type", "--output-tensor-type",
               "--token-embedding-type", "--override-kv", "--split-max-size", "--split-max-tensors"},
              {"--pure", "--dry-run", "--quiet", "--help"}, {"--tensor-type", "--override-kv"});
    auto usageError = [&](const std::string& e) {
        std::fprintf(stderr, "quantzoo-cli export: %s\n%s", e.c_str(), kExportHelp);
        return kUsage;
    };
    if (auto err = args.parse(argc, argv, 2); !err.empty()) return usageError(err);
    if (args.has("--help")) {
        std::fputs(kExportHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) return usageError("expected one MODEL");
    const std::string format = args.valueOr("--format", "gguf");
    if (format != "gguf") return usageError("format '" + format + "' is not available yet (gguf is)");
    if (!args.has("--type")) return usageError("--type is required");
    if (args.has("-o") && args.has("--output")) return usageError("give -o or --output, not both");

    qz::GgufExportParams p;
    p.type = *args.value("--type");
    p.outputPath = args.valueOr("-o", args.valueOr("--output", defaultOutput(args.positional()[0], p.type)));
    p.imatrixPath = args.valueOr("--imatrix", "");
    p.pure = args.has("--pure");
    p.dryRun = args.has("--dry-run");
    for (const auto& spec : args.values("--tensor-type")) {
        const auto eq = spec.rfind('=');
        if (eq == std::string::npos || eq == 0) return usageError("--tensor-type needs REGEX=TYPE, got '" + spec + "'");
        auto t = qz::dtypeFromName(spec.substr(eq + 1));
        if (!t) return usageError("unknown type in --tensor-type '" + spec + "'");
        p.overrides.push_back({spec.substr(0, eq), *t});
    }
    if (auto err = splitAndKvOptions(args, p); !err.empty()) return usageError(err);
    for (auto [opt, dst] : {std::pair{"--output-tensor-type", &p.outputTensorType},
                            std::pair{"--token-embedding-type", &p.tokenEmbeddingType}}) {
        if (auto v = args.value(opt)) {
            auto t = qz::dtypeFromName(*v);
            if (!t) return usageError(std::string("unknown type for ") + opt + ": '" + *v + "'");
            *dst = *t;
        }
    }

    auto model = qz::openModel(args.positional()[0]);
    if (!model) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", model.error().message.c_str());
        return kFailed;
    }
    const bool quiet = args.has("--quiet");
    ProgressLine line("export", quiet || p.dryRun);
    size_t index = 0;
    auto logTensor = [&](const qz::GgufTensorLog& t) {
        if (quiet) return;
        line.finish();
        std::fprintf(stderr, "[%4zu] %-32s %-22s %5s -> %-5s %10s -> %10s  %s\n", ++index, t.name.c_str(),
                     neString(t.ne).c_str(), std::string(qz::dtypeName(t.from)).c_str(),
                     std::string(qz::dtypeName(t.to)).c_str(), mib(t.bytesBefore).c_str(), mib(t.bytesAfter).c_str(),
                     t.reason.c_str());
    };
    auto result = qz::exportGguf(**model, p, line.callback(), logTensor);
    line.finish();
    if (!result) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", result.error().message.c_str());
        return result.error().cancelled ? kCancelled : kFailed;
    }
    if (p.dryRun) {
        std::printf("%-40s %-22s %-6s %12s  %s\n", "tensor", "ne", "type", "bytes", "reason");
        for (const auto& t : result->tensors)
            std::printf("%-40s %-22s %-6s %12llu  %s\n", t.name.c_str(), neString(t.ne).c_str(),
                        std::string(qz::dtypeName(t.to)).c_str(), static_cast<unsigned long long>(t.bytesAfter),
                        t.reason.c_str());
    }
    for (const auto& n : result->notes) std::fprintf(stderr, "note: %s\n", n.c_str());
    std::fprintf(p.dryRun ? stdout : stderr, "%s %s: %zu tensors, %llu parameters, %s (%.4f bits per weight)%s\n",
                 p.dryRun ? "planned" : "wrote", p.dryRun ? result->type.c_str() : result->path.c_str(),
                 result->tensors.size(), static_cast<unsigned long long>(result->parameters),
                 mib(result->fileBytes).c_str(), result->bitsPerWeight, p.dryRun ? " (estimated size)" : "");
    if (!result->splitFirstTensor.empty())
        for (size_t k = 0; k < result->paths.size(); ++k) {
            const size_t first = result->splitFirstTensor[k];
            const size_t end = k + 1 < result->paths.size() ? result->splitFirstTensor[k + 1] : result->tensors.size();
            std::fprintf(p.dryRun ? stdout : stderr, "  %s %s: %zu tensors\n", p.dryRun ? "part" : "wrote",
                         result->paths[k].c_str(), end - first);
        }
    return kOk;
}

}  // namespace qzcli

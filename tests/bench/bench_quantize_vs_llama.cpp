// Quantization speed of QuantZoo against llama.cpp's own llama_model_quantize (what llama-quantize
// runs), on the same F32 GGUF input, with the same thread count, in the same process.
//
// Input: a synthetic Llama (default hidden 1024, 8 layers, ffn 2816, vocab 32000, 16/4 heads:
// 155 M parameters, 620 MB as F32) written as BF16 safetensors and converted to an F32 GGUF by
// qz::exportGguf. For every type (Q4_0 Q8_0 Q4_K_M Q6_K) and thread count (1, 2) it quantizes that GGUF
// with llama.cpp (libllama.v0.5.0.so from tests/llama, dlopen'ed) and with qz::exportGguf (GGUF -> GGUF:
// openModel on the F32 file, then export), alternately, best of --reps runs each, and prints wall and CPU
// seconds (process CPU time, all threads: the stable figure on a shared machine) and the ratios
// ours / llama.cpp (< 1 = we are faster). Then it compares the two output files tensor by tensor
// (type, shape and bytes) and prints how many are byte-identical.
//
// The IQ mixes and Q2_K_S run with a synthetic importance matrix (seeded, same values for both sides).
//
// Usage: bench_quantize_vs_llama [--layers 8] [--hidden 1024] [--ffn 2816] [--vocab 32000] [--heads 16]
//          [--kv-heads 4] [--types Q4_0,Q8_0,Q4_K_M,Q6_K] [--threads 1,2] [--reps 1] [--tmp DIR (default: the system temporary folder)]
//          [--llama-lib PATH] [--input F32.gguf] [--keep]
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_llama_dl.h"
#include "bench_synthetic_llama.h"
#include "export/gguf_export.h"
#include "ggml/imatrix.h"
#include "calib/imatrix.h"
#include "model/model.h"

using namespace qz;
using namespace qzbench;

namespace {

double cpuSeconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep))
        if (!item.empty()) out.push_back(item);
    return out;
}

int llamaFtype(const std::string& t) {
    static const std::map<std::string, int> m = {
        {"F32", 0},     {"F16", 1},     {"Q4_0", 2},    {"Q4_1", 3},    {"Q8_0", 7},   {"Q5_0", 8},
        {"Q5_1", 9},    {"Q2_K", 10},   {"Q3_K_S", 11}, {"Q3_K_M", 12}, {"Q3_K_L", 13}, {"Q4_K_S", 14},
        {"Q4_K_M", 15}, {"Q5_K_S", 16}, {"Q5_K_M", 17}, {"Q6_K", 18},   {"BF16", 32},
        {"IQ2_XXS", 19}, {"IQ2_XS", 20}, {"Q2_K_S", 21}, {"IQ3_XS", 22}, {"IQ3_XXS", 23}, {"IQ1_S", 24},
        {"IQ4_NL", 25}, {"IQ3_S", 26}, {"IQ3_M", 27}, {"IQ2_S", 28}, {"IQ2_M", 29}, {"IQ4_XS", 30},
        {"IQ1_M", 31}, {"TQ1_0", 36}, {"TQ2_0", 37}};
    auto it = m.find(t);
    return it == m.end() ? -1 : it->second;
}

std::string dn(DType t) { return std::string(dtypeName(t)); }

// struct llama_model_imatrix_data of v0.5.0's include/llama.h (an array of these ends with name == nullptr)
struct LlamaImatrixEntry {
    const char* name;
    const float* data;
    size_t size;
};

// The i-quant mixes (and Q2_K_S) get an importance matrix: llama-quantize refuses most of them without.
bool usesImatrix(const std::string& t) { return t.rfind("IQ", 0) == 0 || t == "Q2_K_S"; }

// A synthetic imatrix for every 2-D blk.* weight of the input (seeded positive column weights; the speed
// of the quantizers does not depend on where the weights come from), written as a llama-imatrix GGUF.
Status writeSyntheticImatrix(const Model& m, const std::string& path) {
    ImatrixData d;
    d.datasets = {"synthetic"};
    d.chunkCount = 1;
    d.chunkSize = 512;
    std::mt19937 rng(12345);
    std::uniform_real_distribution<double> ud(0.1, 4.0);
    for (const TensorInfo& t : m.tensors) {
        if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
        ImatrixEntry e;
        e.sum2.resize(static_cast<size_t>(t.shape.back()));
        for (auto& v : e.sum2) v = ud(rng) * ud(rng);
        e.count = 1;
        d.entries[t.name] = std::move(e);
    }
    return writeImatrixGguf(d, path);
}

struct Timing {
    double wall = 1e30, cpu = 1e30;
};

struct Compare {
    int equal = 0, total = 0, typeDiff = 0, missing = 0;
    std::vector<std::string> firstDiffs;
};

Compare compareFiles(const std::string& ours, const std::string& theirs) {
    Compare c;
    auto a = openModel(ours);
    auto b = openModel(theirs);
    if (!a || !b) {
        c.firstDiffs.push_back(!a ? a.error().message : b.error().message);
        return c;
    }
    for (const TensorInfo& t : (*a)->tensors) {
        ++c.total;
        const TensorInfo* u = (*b)->find(t.name);
        if (!u) {
            ++c.missing;
            if (c.firstDiffs.size() < 5) c.firstDiffs.push_back(t.name + ": not in llama.cpp's file");
            continue;
        }
        if (u->dtype != t.dtype || u->shape != t.shape) {
            ++c.typeDiff;
            if (c.firstDiffs.size() < 5)
                c.firstDiffs.push_back(t.name + ": " + dn(t.dtype) + " " + t.shapeString() + " vs " +
                                       dn(u->dtype) + " " + u->shapeString());
            continue;
        }
        const auto x = (*a)->rawBytes(t), y = (*b)->rawBytes(*u);
        if (x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0) {
            ++c.equal;
        } else {
            size_t first = 0;
            while (first < std::min(x.size(), y.size()) && x[first] == y[first]) ++first;
            if (c.firstDiffs.size() < 5)
                c.firstDiffs.push_back(t.name + " (" + dn(t.dtype) + "): bytes differ from offset " +
                                       std::to_string(first));
        }
    }
    if ((*b)->tensors.size() != (*a)->tensors.size())
        c.firstDiffs.push_back("tensor counts differ: " + std::to_string((*a)->tensors.size()) + " vs " +
                               std::to_string((*b)->tensors.size()));
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress visible when redirected
    LlamaShape shape;
    shape.hidden = 1024;
    shape.layers = 8;
    shape.ffn = 2816;
    shape.heads = 16;
    shape.kvHeads = 4;
    std::vector<std::string> types = {"Q4_0", "Q8_0", "Q4_K_M", "Q6_K"};
    std::vector<int> threadCounts = {1, 2};
    int reps = 1;
    std::string tmpRoot = std::filesystem::temp_directory_path().string(), libPath = defaultLlamaLib(), input;
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--layers") shape.layers = std::atoll(next().c_str());
        else if (a == "--hidden") shape.hidden = std::atoll(next().c_str());
        else if (a == "--ffn") shape.ffn = std::atoll(next().c_str());
        else if (a == "--vocab") shape.vocab = std::atoll(next().c_str());
        else if (a == "--heads") shape.heads = std::atoll(next().c_str());
        else if (a == "--kv-heads") shape.kvHeads = std::atoll(next().c_str());
        else if (a == "--types") types = split(next(), ',');
        else if (a == "--threads") {
            threadCounts.clear();
            for (const auto& s : split(next(), ',')) threadCounts.push_back(std::atoi(s.c_str()));
        } else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
        else if (a == "--tmp") tmpRoot = next();
        else if (a == "--llama-lib") libPath = next();
        else if (a == "--input") input = next();
        else if (a == "--keep") keep = true;
        else {
            std::fprintf(stderr, "unknown option %s (see the comment at the top of the source)\n", a.c_str());
            return 2;
        }
    }
    for (const auto& t : types)
        if (llamaFtype(t) < 0) {
            std::fprintf(stderr, "unknown type %s\n", t.c_str());
            return 2;
        }

    LlamaApi api;
    std::string err;
    if (!loadLlama(libPath, api, err)) {
        std::fprintf(stderr, "%s\n", err.c_str());
        return 1;
    }
    LlamaQuantizeParams defaults = api.model_quantize_default_params();
    if (defaults.nthread != 0 || defaults.ftype != 7 || defaults.allow_requantize ||
        !defaults.quantize_output_tensor || defaults.only_copy || defaults.dry_run || defaults.imatrix != nullptr ||
        defaults.prune_layers != nullptr || defaults.max_buf_size == 0) {
        std::fprintf(stderr, "llama_model_quantize_default_params() looks unlike v0.5.0's (ftype %d): struct "
                             "layout mismatch?\n", defaults.ftype);
        return 1;
    }
    std::printf("llama.cpp: %s\n", libPath.c_str());
    std::printf("llama.cpp system info: %s\n", api.print_system_info());

    std::string tmpl = tmpRoot + "/qz-bench-quant-XXXXXX";
    if (!mkdtemp(tmpl.data())) {
        std::fprintf(stderr, "mkdtemp %s: %s\n", tmpl.c_str(), std::strerror(errno));
        return 1;
    }
    const std::string work = tmpl;
    auto cleanup = [&]() {
        if (keep) std::printf("kept %s\n", work.c_str());
        else std::filesystem::remove_all(work);
    };
    if (input.empty()) {
        const std::string hf = work + "/hf";
        std::printf("synthetic llama: hidden %lld, layers %lld, ffn %lld, vocab %lld, heads %lld/%lld: %.1f M "
                    "parameters\n", static_cast<long long>(shape.hidden), static_cast<long long>(shape.layers),
                    static_cast<long long>(shape.ffn), static_cast<long long>(shape.vocab),
                    static_cast<long long>(shape.heads), static_cast<long long>(shape.kvHeads),
                    parameterCount(shape) / 1e6);
        if (auto st = writeSyntheticLlama(hf, shape, DType::BF16, 5'000'000'000ull,
                                          sourceDir() + "/../data/models/bard-llama");
            !st) {
            std::fprintf(stderr, "writing the model: %s\n", st.error().message.c_str());
            cleanup();
            return 1;
        }
        auto m = openModel(hf);
        if (!m) {
            std::fprintf(stderr, "%s\n", m.error().message.c_str());
            cleanup();
            return 1;
        }
        GgufExportParams p;
        p.outputPath = work + "/input-F32.gguf";
        p.type = "F32";
        auto r = exportGguf(**m, p, {});
        if (!r) {
            std::fprintf(stderr, "F32 export: %s\n", r.error().message.c_str());
            cleanup();
            return 1;
        }
        input = p.outputPath;
        std::filesystem::remove_all(hf);
    }
    std::printf("input: %s (%.1f MiB)\n\n", input.c_str(), mib(std::filesystem::file_size(input)));

    // imatrix for the IQ mixes: a file for our exporter, the same values in llama_model_imatrix_data form
    std::string imatrixPath;
    ggml::Imatrix imatrix;
    std::vector<LlamaImatrixEntry> imatrixData;
    if (std::any_of(types.begin(), types.end(), usesImatrix)) {
        imatrixPath = work + "/synthetic-imatrix.gguf";
        auto m = openModel(input);
        if (!m) {
            std::fprintf(stderr, "%s\n", m.error().message.c_str());
            cleanup();
            return 1;
        }
        if (auto st = writeSyntheticImatrix(**m, imatrixPath); !st) {
            std::fprintf(stderr, "imatrix: %s\n", st.error().message.c_str());
            cleanup();
            return 1;
        }
        auto im = ggml::loadImatrix(imatrixPath);
        if (!im) {
            std::fprintf(stderr, "imatrix: %s\n", im.error().message.c_str());
            cleanup();
            return 1;
        }
        imatrix = std::move(*im);
        for (const auto& [name, v] : imatrix.values)
            imatrixData.push_back({name.c_str(), v.data(), v.size()});
        imatrixData.push_back({nullptr, nullptr, 0});
        std::printf("synthetic imatrix for the IQ mixes and Q2_K_S: %zu entries\n", imatrix.values.size());
    }

    std::printf("%-7s %3s | %9s %9s | %9s %9s | %7s %7s | %s\n", "type", "thr", "llama s", "llama cpu", "ours s",
                "ours cpu", "wall x", "cpu x", "tensors byte-identical");
    int mismatches = 0;
    for (const std::string& type : types) {
        const std::string outLlama = work + "/llama-" + type + ".gguf", outOurs = work + "/ours-" + type + ".gguf";
        for (int threads : threadCounts) {
            Timing tl, to;
            for (int r = 0; r < reps; ++r) {
                LlamaQuantizeParams qp = api.model_quantize_default_params();
                qp.nthread = threads;
                qp.ftype = llamaFtype(type);
                if (usesImatrix(type)) qp.imatrix = imatrixData.data();
                double w0 = 0, c0 = cpuSeconds();
                auto t0 = std::chrono::steady_clock::now();
                const uint32_t rc = api.model_quantize(input.c_str(), outLlama.c_str(), &qp);
                w0 = secondsSince(t0);
                c0 = cpuSeconds() - c0;
                if (rc != 0) {
                    std::fprintf(stderr, "llama_model_quantize %s failed (%u)\n", type.c_str(), rc);
                    cleanup();
                    return 1;
                }
                tl.wall = std::min(tl.wall, w0);
                tl.cpu = std::min(tl.cpu, c0);

                c0 = cpuSeconds();
                t0 = std::chrono::steady_clock::now();
                auto m = openModel(input);
                if (!m) {
                    std::fprintf(stderr, "%s\n", m.error().message.c_str());
                    cleanup();
                    return 1;
                }
                GgufExportParams p;
                p.outputPath = outOurs;
                p.type = type;
                p.threads = threads;
                if (usesImatrix(type)) p.imatrixPath = imatrixPath;
                auto res = exportGguf(**m, p, {});
                w0 = secondsSince(t0);
                c0 = cpuSeconds() - c0;
                if (!res) {
                    std::fprintf(stderr, "exportGguf %s: %s\n", type.c_str(), res.error().message.c_str());
                    cleanup();
                    return 1;
                }
                to.wall = std::min(to.wall, w0);
                to.cpu = std::min(to.cpu, c0);
            }
            const Compare c = compareFiles(outOurs, outLlama);
            if (c.equal != c.total || !c.firstDiffs.empty()) ++mismatches;
            std::printf("%-7s %3d | %9.2f %9.2f | %9.2f %9.2f | %7.2f %7.2f | %d / %d (files %.1f / %.1f MiB)\n",
                        type.c_str(), threads, tl.wall, tl.cpu, to.wall, to.cpu, to.wall / tl.wall,
                        to.cpu / tl.cpu, c.equal, c.total, mib(std::filesystem::file_size(outOurs)),
                        mib(std::filesystem::file_size(outLlama)));
            for (const auto& d : c.firstDiffs) std::printf("        differs: %s\n", d.c_str());
            std::fflush(stdout);
        }
        std::error_code ec;
        std::filesystem::remove(outLlama, ec);
        std::filesystem::remove(outOurs, ec);
    }
    std::printf("\nx = ours / llama.cpp (below 1: QuantZoo is faster). Times are the best of %d run(s); the "
                "machine is shared, CPU seconds are the steadier figure.\n", reps);
    cleanup();
    return mismatches ? 1 : 0;
}

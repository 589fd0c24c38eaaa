// How well the target-size proxy predicts the real cost of quantizing one tensor.
//
// For a test model (default bard-llama, written as an F32 GGUF first so that tensor names and layouts
// are llama.cpp's), an importance matrix from the training text and, for every quantizable tensor and
// each of a few types, the mean KL-divergence of the model's output on the validation text when that
// tensor alone is quantized (our engine, llama-perplexity's KLD). Prints, over all (tensor, type) pairs,
// the Spearman rank correlation of the measured KLD with
//   raw: Σ_j imp_j Σ_i (w − q)²             (what ggml's quantizers minimise)
//   rel: raw / Σ_j imp_j Σ_i w²             (the same relative to the tensor's weighted energy)
// and, per tensor role, the geometric mean of KLD / rel: the role weights of core/export/target_size.cpp.
// Finally the correlation of the role-weighted rel with the KLD.
//
// Usage: bench_target_proxy [MODEL_DIR] [--ctx 128] [--chunks 8] [--tmp DIR]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "export/gguf_export.h"
#include "export/target_size.h"
#include "ggml/dequantize.h"
#include "ggml/imatrix.h"
#include "ggml/quantize.h"
#include "infer/evaluate.h"
#include "infer/imatrix_collect.h"
#include "model/model.h"

using namespace qz;

namespace {

std::string readText(const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<double> ranks(const std::vector<double>& v) {
    std::vector<size_t> idx(v.size());
    for (size_t i = 0; i < idx.size(); ++i)
        idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size();) {
        size_t j = i;
        while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]])
            ++j;
        for (size_t k = i; k <= j; ++k)
            r[idx[k]] = (static_cast<double>(i + j)) / 2.0;
        i = j + 1;
    }
    return r;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
    const double n = static_cast<double>(a.size());
    double ma = 0, mb = 0;
    for (size_t i = 0; i < a.size(); ++i)
        ma += a[i], mb += b[i];
    ma /= n, mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / std::sqrt(saa * sbb);
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
    return pearson(ranks(a), ranks(b));
}

} // namespace

int main(int argc, char** argv) {
    const std::string data = std::string(QZ_BENCH_SOURCE_DIR) + "/../data";
    std::string modelDir = data + "/models/bard-llama";
    int nCtx = 128, nChunks = 8;
    std::string tmp = std::filesystem::temp_directory_path().string();
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--ctx" && i + 1 < argc)
            nCtx = std::atoi(argv[++i]);
        else if (a == "--chunks" && i + 1 < argc)
            nChunks = std::atoi(argv[++i]);
        else if (a == "--tmp" && i + 1 < argc)
            tmp = argv[++i];
        else
            modelDir = a;
    }
    const std::string dir = tmp + "/qz-target-proxy-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    auto src = openModel(modelDir);
    if (!src) return std::fprintf(stderr, "%s\n", src.error().message.c_str()), 1;
    const std::string f32 = dir + "/model-f32.gguf";
    GgufExportParams ep;
    ep.type = "F32";
    ep.outputPath = f32;
    if (auto r = exportGguf(**src, ep, {}); !r)
        return std::fprintf(stderr, "%s\n", r.error().message.c_str()), 1;
    auto model = openModel(f32);
    if (!model) return std::fprintf(stderr, "%s\n", model.error().message.c_str()), 1;

    const std::string train = readText(data + "/text/shakespeare-train.txt");
    const std::string valid = readText(data + "/text/shakespeare-valid.txt");
    ImatrixParams ip;
    ip.nCtx = nCtx;
    ip.nChunks = 32;
    ip.processOutput = true;
    auto im = computeImatrix(**model, train, ip);
    if (!im) return std::fprintf(stderr, "%s\n", im.error().message.c_str()), 1;
    const std::string imPath = dir + "/imatrix.gguf";
    if (auto st = writeImatrixGguf(*im, imPath); !st) return 1;

    EvalParams ev;
    ev.nCtx = nCtx;
    ev.nChunks = nChunks;
    KldBase base;
    if (auto r = evaluatePerplexity(**model, valid, ev, {}, nullptr, &base); !r) return 1;

    SensitivityParams sp;
    sp.imatrixPath = imPath;
    sp.sampleRows = 0; // every row
    sp.unitRoleWeights = true;
    sp.candidates = {DType::IQ2_XS, DType::Q2_K, DType::IQ3_S, DType::Q3_K,
                     DType::Q4_K,   DType::Q5_K, DType::Q6_K};
    auto table = measureSensitivity(**model, sp);
    if (!table) return std::fprintf(stderr, "%s\n", table.error().message.c_str()), 1;

    struct Row {
        std::string name, role;
        DType type;
        double raw, rel, kld;
    };
    std::vector<Row> rows;
    auto imx = ggml::loadImatrix(imPath);
    for (const auto& t : table->tensors) {
        if (!t.quantizable) continue;
        auto info = (*model)->find(t.name);
        auto vals = readTensorF32(**model, *info);
        if (!vals) return 1;
        const int64_t ne0 = t.ne[0];
        const int64_t nrows = static_cast<int64_t>(vals->size()) / ne0;
        auto look = imx->lookup(t.name, ne0);
        const float* imp = look ? *look : nullptr;
        for (const auto& c : t.candidates) {
            std::vector<uint8_t> q(*bytesFor(c.type, vals->size()));
            if (!ggml::quantizeTensor(c.type, vals->data(), nrows, ne0, imp, q.data(), 0)) return 1;
            std::vector<float> deq(vals->size());
            ggml::dequantize(c.type, q.data(), deq.data(), static_cast<int64_t>(deq.size()));
            WeightOverrides ov;
            ov[t.name] = std::move(deq);
            auto k = evaluateKlDivergence(**model, base, ev, {}, &ov);
            if (!k) return std::fprintf(stderr, "%s\n", k.error().message.c_str()), 1;
            rows.push_back({t.name, t.role, c.type, c.weightedError, c.loss, k->meanKld});
            std::printf("%-28s %-7s raw %.4e rel %.4e KLD %.4e\n", t.name.c_str(),
                        std::string(dtypeName(c.type)).c_str(), c.weightedError, c.loss, k->meanKld);
        }
    }
    std::vector<double> raw, rel, kld;
    for (const auto& r : rows)
        raw.push_back(r.raw), rel.push_back(r.rel), kld.push_back(r.kld);
    std::printf("\n%zu single-tensor quantizations of %s (ctx %d, %d chunks)\n", rows.size(),
                modelDir.c_str(), nCtx, nChunks);
    std::printf("Spearman(KLD, raw) = %.3f   Spearman(KLD, rel) = %.3f\n", spearman(kld, raw),
                spearman(kld, rel));
    // Per type, across tensors (what the allocation compares).
    std::map<std::string, std::vector<size_t>> byType, byRole;
    for (size_t i = 0; i < rows.size(); ++i) {
        byType[std::string(dtypeName(rows[i].type))].push_back(i);
        byRole[rows[i].role].push_back(i);
    }
    std::map<std::string, double> weight;
    std::printf("role weights (geometric mean of KLD / rel):\n");
    for (const auto& [role, idx] : byRole) {
        double s = 0;
        for (size_t i : idx)
            s += std::log(rows[i].kld / rows[i].rel);
        weight[role] = std::exp(s / static_cast<double>(idx.size()));
        std::vector<double> a, b;
        for (size_t i : idx)
            a.push_back(rows[i].kld), b.push_back(rows[i].rel);
        std::printf("  %-12s %.4e  (n=%zu, within-role Spearman %.3f)\n", role.c_str(), weight[role],
                    idx.size(), spearman(a, b));
    }
    std::vector<double> weighted;
    for (const auto& r : rows)
        weighted.push_back(r.rel * weight[r.role]);
    std::printf("Spearman(KLD, weighted rel) = %.3f\n", spearman(kld, weighted));
    // The same with role weights fitted to raw instead of rel.
    std::map<std::string, double> weightRaw;
    for (const auto& [role, idx] : byRole) {
        double s = 0;
        for (size_t i : idx)
            s += std::log(rows[i].kld / rows[i].raw);
        weightRaw[role] = std::exp(s / static_cast<double>(idx.size()));
    }
    std::vector<double> weightedRaw;
    for (const auto& r : rows)
        weightedRaw.push_back(r.raw * weightRaw[r.role]);
    std::printf("Spearman(KLD, weighted raw) = %.3f\n", spearman(kld, weightedRaw));
    // Median factor between the prediction and the measurement (how far the weighted rel is off).
    std::vector<double> ratio;
    for (size_t i = 0; i < rows.size(); ++i)
        ratio.push_back(std::fabs(std::log(weighted[i] / rows[i].kld)));
    std::sort(ratio.begin(), ratio.end());
    std::printf("weighted rel vs KLD: median factor %.2f, 90th percentile factor %.2f\n",
                std::exp(ratio[ratio.size() / 2]), std::exp(ratio[ratio.size() * 9 / 10]));
    for (const auto& [type, idx] : byType) {
        std::vector<double> a, b, c, d;
        for (size_t i : idx)
            a.push_back(rows[i].kld), b.push_back(rows[i].raw), c.push_back(rows[i].rel),
                d.push_back(weighted[i]);
        std::vector<double> e;
        for (size_t i : idx)
            e.push_back(weightedRaw[i]);
        std::printf(
            "  %-7s across %zu tensors: Spearman raw %.3f rel %.3f weighted rel %.3f weighted raw %.3f\n",
            type.c_str(), idx.size(), spearman(a, b), spearman(a, c), spearman(a, d), spearman(a, e));
    }
    std::filesystem::remove_all(dir);
    return 0;
}

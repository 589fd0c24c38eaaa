// LLM.int8() against per-row absmax INT8 (no outliers) on a model, on a whole evaluation text: perplexity,
// PPL(Q) − PPL(original), the paired per-chunk difference of mean NLL to the original and to per-row INT8
// (mean ± standard error over chunks: is the perplexity ordering resolved?), and KLD, for several
// outlier thresholds. Weight-only (our LLM.int8: outlier weight columns in fp16, calibrated outlier set),
// and then bitsandbytes' full numerics: int8 weights per row over all columns (as Int8Params stores them)
// and the activations quantized per token at every linear layer (llmInt8QuantizeActivations, applied in
// place through the engine's LinearObserver, whose pointer is the matmul's input), outliers found per
// forward pass, against W8A8 without the decomposition.
// Outlier features come from a calibration pass (jobs/calibration.h) on another text. Measures, does not
// assert (tests/core/test_llm_int8.cpp asserts).
// usage: bench_llm_int8 MODEL_DIR CALIB.txt EVAL.txt [evalCtx=256] [evalChunks=-1] [calibCtx=128]
//                       [calibChunks=16] [thresholds=6,3,2]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "infer/engine.h"
#include "infer/evaluate.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "jobs/calibration.h"
#include "model/model.h"
#include "quant/llm_int8.h"

using namespace qz;

static std::string readText(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

static bool quantizable(const TensorInfo& t) {
    if (t.shape.size() != 2) return false;
    for (const char* skip : {"embed_tokens", "wte", "wpe", "lm_head"})
        if (t.name.find(skip) != std::string::npos) return false;
    return true;
}

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr,
                     "usage: bench_llm_int8 MODEL CALIB.txt EVAL.txt [evalCtx] [evalChunks] [calibCtx] "
                     "[calibChunks] [t1,t2,...]\n");
        return 2;
    }
    const int evalCtx = argc > 4 ? std::atoi(argv[4]) : 256;
    const int evalChunks = argc > 5 ? std::atoi(argv[5]) : -1;
    const int calibCtx = argc > 6 ? std::atoi(argv[6]) : 128;
    const int calibChunks = argc > 7 ? std::atoi(argv[7]) : 16;
    std::vector<float> thresholds;
    {
        std::stringstream ts(argc > 8 ? argv[8] : "6,3,2");
        std::string item;
        while (std::getline(ts, item, ','))
            thresholds.push_back(std::strtof(item.c_str(), nullptr));
    }
    auto m = openModel(argv[1]);
    if (!m) {
        std::fprintf(stderr, "%s\n", m.error().message.c_str());
        return 1;
    }
    const Model& mod = **m;
    CalibrationParams cp;
    cp.nCtx = calibCtx;
    cp.nChunks = calibChunks;
    auto stats = collectActivationMaxima(mod, readText(argv[2]), cp);
    if (!stats) {
        std::fprintf(stderr, "%s\n", stats.error().message.c_str());
        return 1;
    }
    const std::string text = readText(argv[3]);
    EvalParams ep;
    ep.nCtx = evalCtx;
    ep.nChunks = evalChunks;
    KldBase base;
    auto pr = evaluatePerplexity(mod, text, ep, {}, nullptr, &base);
    if (!pr) {
        std::fprintf(stderr, "%s\n", pr.error().message.c_str());
        return 1;
    }
    std::printf("%s: eval -c %d, %d chunks, %lld scored tokens; calibration -c %d x %d chunks\n", argv[1],
                pr->nCtx, pr->nChunks, (long long)pr->count, stats->nCtx, stats->nChunks);
    std::printf("original: PPL %.4f +/- %.5f\n", pr->ppl, pr->pplError);
    // Mean NLL of each chunk, from the running perplexity (every chunk scores the same number of tokens).
    auto chunkNll = [](const PerplexityResult& r) {
        std::vector<double> c(r.runningPpl.size());
        for (size_t k = 0; k < c.size(); ++k)
            c[k] = (k + 1) * std::log(r.runningPpl[k]) - (k > 0 ? k * std::log(r.runningPpl[k - 1]) : 0.0);
        return c;
    };
    // Mean and standard error of a − b over chunks.
    auto paired = [](const std::vector<double>& a, const std::vector<double>& b) {
        const size_t n = std::min(a.size(), b.size());
        double s = 0, s2 = 0;
        for (size_t k = 0; k < n; ++k) {
            s += a[k] - b[k];
            s2 += (a[k] - b[k]) * (a[k] - b[k]);
        }
        const double m = s / n, var = n > 1 ? (s2 / n - m * m) * n / (n - 1) : 0.0;
        return std::pair{m, std::sqrt(std::max(0.0, var) / n)};
    };
    const auto origNll = chunkNll(*pr);
    std::vector<double> rowNll;
    auto run = [&](float threshold) {
        WeightOverrides ov;
        int64_t outliers = 0;
        uint64_t bytes = 0;
        for (const TensorInfo& t : mod.tensors) {
            if (!quantizable(t)) continue;
            auto w = readTensorF32(mod, t);
            if (!w) return;
            const bool rowsIn = weightInputIsRows(t.name);
            std::vector<int32_t> outl;
            if (auto it = stats->layers.find(t.name); it != stats->layers.end() && std::isfinite(threshold))
                outl = findOutlierFeatures(it->second.maxAbs, threshold);
            std::vector<float> y(w->size());
            llmInt8QuantizeDequantize(w->data(), t.rows(), t.cols(), rowsIn, outl, y.data());
            outliers += static_cast<int64_t>(outl.size());
            bytes += llmInt8Bytes(rowsIn ? t.cols() : t.rows(), rowsIn ? t.rows() : t.cols(),
                                  static_cast<int64_t>(outl.size()))
                         .total();
            ov[t.name] = std::move(y);
        }
        auto q = evaluatePerplexity(mod, text, ep, {}, &ov);
        auto k = evaluateKlDivergence(mod, base, ep, {}, &ov);
        if (!q || !k) return;
        const auto nll = chunkNll(*q);
        if (!std::isfinite(threshold)) rowNll = nll;
        const auto vsOrig = paired(nll, origNll), vsRow = paired(nll, rowNll);
        std::printf(
            "%-16s outlier cols %5lld  bytes %9llu  PPL %.4f  PPL-orig %+.4f  dNLL vs orig %+.6f +/- %.6f  "
            "dNLL vs per-row %+.6f +/- %.6f  KLD %.7f +/- %.7f  same-top %.3f%%\n",
            std::isfinite(threshold) ? ("LLM.int8 t=" + std::to_string(threshold).substr(0, 4)).c_str()
                                     : "per-row INT8",
            (long long)outliers, (unsigned long long)bytes, q->ppl, q->ppl - pr->ppl, vsOrig.first,
            vsOrig.second, vsRow.first, vsRow.second, k->meanKld, k->meanKldError, 100.0 * k->sameTop);
        std::fflush(stdout);
    };
    run(INFINITY);
    for (float t : thresholds)
        run(t);

    // Activations quantized too (bitsandbytes' MatMul8bitLt numerics, see the header).
    auto in = tokenizeForPerplexity(mod, text);
    if (!in) return 1;
    WeightOverrides rowInt8;
    std::set<std::string> linear;
    for (const TensorInfo& t : mod.tensors) {
        if (!quantizable(t)) continue;
        auto w = readTensorF32(mod, t);
        if (!w) return 1;
        std::vector<float> y(w->size());
        llmInt8QuantizeDequantize(w->data(), t.rows(), t.cols(), weightInputIsRows(t.name), {}, y.data());
        rowInt8[t.name] = std::move(y);
        linear.insert(t.name);
    }
    auto runAct = [&](float threshold, const char* label) {
        EngineOptions opt;
        opt.nCtx = evalCtx;
        opt.overrides = &rowInt8;
        auto e = Engine::load(mod, opt);
        if (!e) return;
        int64_t calls = 0, outl = 0;
        (*e)->setObserver([&](const std::string& name, const float* x, int64_t nTok, int64_t nIn) {
            if (!linear.count(name)) return;
            // The observer sees the buffer the following matmul reads (engine.cpp: observe, then matmul).
            outl += static_cast<int64_t>(
                llmInt8QuantizeActivations(const_cast<float*>(x), nTok, nIn, threshold).size());
            ++calls;
        });
        PerplexityParams pp = in->params;
        pp.nCtx = evalCtx;
        pp.nChunks = evalChunks;
        auto q = computePerplexity(**e, in->tokens, pp);
        auto k = computeKlDivergence(**e, base, in->params);
        if (!q || !k) return;
        const auto nll = chunkNll(*q);
        const auto vsOrig = paired(nll, origNll), vsRow = paired(nll, rowNll);
        std::printf("%-16s outlier cols/call %6.2f  PPL %.4f  PPL-orig %+.4f  dNLL vs orig %+.6f +/- %.6f  "
                    "dNLL vs per-row(W only) %+.6f +/- %.6f  KLD %.7f +/- %.7f  same-top %.3f%%\n",
                    label, calls ? double(outl) / calls : 0.0, q->ppl, q->ppl - pr->ppl, vsOrig.first,
                    vsOrig.second, vsRow.first, vsRow.second, k->meanKld, k->meanKldError,
                    100.0 * k->sameTop);
        std::fflush(stdout);
    };
    std::printf(
        "activations quantized too (bitsandbytes numerics; weights per-row INT8 over all columns):\n");
    runAct(0.0f, "W8A8 no outliers");
    for (float t : thresholds)
        runAct(t, ("LLM.int8 t=" + std::to_string(t).substr(0, 4)).c_str());
    return 0;
}

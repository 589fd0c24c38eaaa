// What to do with MoE experts that calibration routes few or no tokens to (core/gptq/README.md D.6).
// On the tiny seeded qwen3moe and mixtral models (tests/core/tiny_archs.h) the engine runs a calibration
// text and a held-out text; the observer keeps every expert's routed inputs (gate/up: the normed hidden
// states of its tokens; down: its SiLU(gate)·up activations). Each expert layer is then quantized (4-bit,
// g128, sym) from only its first n calibration tokens, n = 0, 1, 2, 4, ..., by:
//   gptq    GPTQ on the expert's own Hessian of those n tokens (n = 0: every column dead, the weight zero,
//           as AutoGPTQ);
//   rtn     round to nearest on the same grid (GPTQModel's default fallback below 0.5 % of the tokens);
//   avg     GPTQ on the layer's averaged expert Hessian (all experts' calibration tokens of that linear);
//   damped  GPTQ on the own Hessian plus the averaged one scaled to 16 tokens (a prior of 16 tokens);
// and scored by the relative output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) on the expert's held-out tokens'
// Hessian H. Printed: the mean over experts and layers of each method's error divided by RTN's, for the
// gate/up and the down projections separately.
// usage: bench_moe_fallback [calibration windows (default 32)]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "../core/tiny_archs.h"
#include "calib/hessian.h"
#include "calib/windows.h"
#include "gptq/gptq_quant.h"
#include "infer/engine.h"
#include "model/model.h"

using namespace qz;

namespace {

struct Rows {
    int nIn = 0;
    std::vector<float> x;  // [tokens][nIn]
    int64_t tokens() const { return nIn ? static_cast<int64_t>(x.size()) / nIn : 0; }
};

// Every expert linear's routed inputs over the windows (one sequence per window, from an empty cache).
bool collect(Engine& e, const std::vector<std::vector<int32_t>>& windows, std::map<std::string, Rows>& out) {
    e.setObserver([&](const std::string& name, const float* x, int64_t n, int64_t nIn) {
        if (name.find(".experts.") == std::string::npos) return;
        Rows& r = out[name];
        r.nIn = static_cast<int>(nIn);
        r.x.insert(r.x.end(), x, x + n * nIn);
    });
    std::vector<float> logits;
    for (const auto& w : windows) {
        logits.resize(w.size() * static_cast<size_t>(e.nVocab()));
        if (!e.eval(w, 0, logits.data())) return false;
    }
    e.setObserver({});
    return true;
}

std::vector<float> hessian(const Rows& r, int64_t n) {
    calib::HessianAccumulator h(r.nIn);
    if (n > 0) h.add(r.x.data(), n, 1);
    h.countSample(1);
    return h.finish();
}

}  // namespace

int main(int argc, char** argv) {
    const int nWin = argc > 1 ? std::atoi(argv[1]) : 32;
    const std::string data = std::string(QZ_BENCH_SOURCE_DIR) + "/../data";
    const std::filesystem::path tmp = std::filesystem::temp_directory_path() / "qz-bench-moe-fallback";
    std::printf("bench_moe_fallback: %d calibration windows x 64 tokens (shakespeare-train), held out: 32 x 64 "
                "(shakespeare-valid); 4-bit g128 sym; error / RTN's error, mean over experts and layers\n",
                nWin);
    gptq::QuantConfig qc;
    qc.bits = 4;
    qc.groupSize = 128;
    qc.threads = 1;
    const std::vector<int64_t> ns = {0, 1, 4, 16, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048};
    for (const std::string arch : {"qwen3moe", "mixtral"}) {
        const std::string dir = (tmp / arch).string();
        if (auto s = qztest::writeTinyModel(dir, arch, data); !s) {
            std::fprintf(stderr, "%s\n", s.error().message.c_str());
            return 1;
        }
        auto m = openModel(dir);
        if (!m) return 1;
        EngineOptions eo;
        eo.threads = 2;
        eo.nCtx = 64;
        auto eng = Engine::load(**m, eo);
        if (!eng) {
            std::fprintf(stderr, "%s\n", eng.error().message.c_str());
            return 1;
        }
        calib::CalibParams cp;
        cp.seqLen = 64;
        cp.samples = nWin;
        std::map<std::string, Rows> cal, held;
        {
            auto t = calib::tokenizeTextFile(**m, data + "/text/shakespeare-train.txt");
            auto v = calib::tokenizeTextFile(**m, data + "/text/shakespeare-valid.txt");
            if (!t || !v) return 1;
            auto wc = calib::calibrationWindows(*t, cp);
            cp.samples = 32;
            auto wv = calib::calibrationWindows(*v, cp);
            if (!wc || !wv || !collect(**eng, *wc, cal) || !collect(**eng, *wv, held)) return 1;
        }
        // The layer's averaged expert Hessian per linear kind: all experts' calibration tokens.
        std::map<std::string, std::vector<float>> avg;  // kind ("blk.N.gate_proj") -> Σ over experts
        std::map<std::string, int64_t> avgTok;
        auto kindOf = [](const std::string& name) {
            const auto e = name.find(".experts.");
            const auto k = name.find('.', e + 9);
            return name.substr(0, e) + name.substr(k);
        };
        for (const auto& [name, r] : cal) {
            calib::HessianAccumulator h(r.nIn);
            h.add(r.x.data(), r.tokens(), 1);
            h.countSample(1);
            auto f = h.finish();
            auto& a = avg[kindOf(name)];
            if (a.empty()) a.assign(f.size(), 0.0f);
            for (size_t i = 0; i < f.size(); ++i) a[i] += f[i];
            avgTok[kindOf(name)] += r.tokens();
        }
        for (auto& [k, a] : avg)
            for (float& v : a) v /= static_cast<float>(std::max<int64_t>(1, avgTok[k]));  // per token
        const char* methods[] = {"gptq", "rtn", "avg", "damped"};
        for (const bool down : {false, true}) {
            std::printf("\n%s, %s (columns %d)\n", arch.c_str(), down ? "down" : "gate/up",
                        down ? static_cast<int>(qztest::tinyDims(arch).expertFf ? qztest::tinyDims(arch).expertFf
                                                                                 : qztest::tinyDims(arch).ffn)
                             : static_cast<int>(qztest::tinyDims(arch).hidden));
            std::printf("%8s", "tokens");
            for (const char* mth : methods) std::printf(" %9s", mth);
            std::printf("   (min routed calibration tokens of an expert: ");
            int64_t minTok = INT64_MAX;
            for (const auto& [name, r] : cal) minTok = std::min(minTok, r.tokens());
            std::printf("%lld)\n", static_cast<long long>(minTok));
            for (int64_t n : ns) {
                double sum[4] = {0, 0, 0, 0};
                int count = 0;
                for (const auto& [name, r] : cal) {
                    const bool isDown = name.find("down_proj") != std::string::npos || name.find(".w2.") != std::string::npos;
                    if (isDown != down || r.tokens() < n || !held.count(name)) continue;
                    const TensorInfo* t = (*m)->find(name);
                    auto W = readTensorF32(**m, *t);
                    if (!W) return 1;
                    const int rows = static_cast<int>(t->shape[0]), cols = static_cast<int>(t->shape[1]);
                    const auto Hheld = hessian(held.at(name), held.at(name).tokens());
                    const auto Hn = hessian(r, n);  // 2/1 · Σ over n tokens
                    std::vector<float> Havg = avg.at(kindOf(name));
                    for (float& v : Havg) v *= 2.0f;  // the same 2·Σ convention, one token's worth
                    std::vector<float> Hd(Hn.size());
                    for (size_t i = 0; i < Hn.size(); ++i) Hd[i] = Hn[i] + 16.0f * Havg[i];
                    const auto rtn = gptq::quantizeLayerRtn(W->data(), rows, cols, qc);
                    const double eRtn = gptq::relativeOutputError(W->data(), gptq::dequantize(rtn), rows, cols, Hheld, 1);
                    double e[4];
                    e[1] = eRtn;
                    for (int k : {0, 2, 3}) {
                        auto q = gptq::quantizeLayerGptq(W->data(), rows, cols, k == 0 ? Hn : k == 2 ? Havg : Hd, qc);
                        if (!q) return 1;
                        e[k] = gptq::relativeOutputError(W->data(), gptq::dequantize(*q), rows, cols, Hheld, 1);
                    }
                    for (int k = 0; k < 4; ++k) sum[k] += e[k] / eRtn;
                    ++count;
                }
                if (!count) continue;
                std::printf("%8lld", static_cast<long long>(n));
                for (double s : sum) std::printf(" %9.4f", s / count);
                std::printf("   (%d expert layers)\n", count);
            }
        }
    }
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
    return 0;
}

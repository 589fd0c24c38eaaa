// GPTQ benchmark: one linear layer (default 4096 × 4096) calibrated on synthetic, seeded activations
// (default 128 samples × 2048 tokens): time of the Hessian accumulation and of the GPTQ pass (4-bit,
// group 128, sym, damp 0.01, no act-order), AutoGPTQ's loss Σ(w−q)²/d²/2 and the relative output error
// tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of GPTQ and of RTN, for 1 and all threads.
// usage: bench_gptq [rows cols samples seqLen [dumpDir]]
// With dumpDir the weight and the activations are written (fp16, little-endian) as dumpDir/W.f16
// [rows×cols], dumpDir/X.f16 [samples×seqLen×cols] and dumpDir/meta.json, plus our results
// (dumpDir/ours.json), so that another implementation (e.g. AutoGPTQ's GPTQ class) can be run on the
// identical data. All values are fp16-representable, so both sides see the same numbers.
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/parallel.h"
#include "gptq/gptq_hessian.h"
#include "gptq/gptq_quant.h"

using namespace qz;
using Clock = std::chrono::steady_clock;

static double secs(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// CPU time of the whole process (all threads): steadier than wall time on a shared machine.
static double cpuNow() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }
static float h16(float x) { return fp16ToFp32(fp32ToFp16(x)); }

int main(int argc, char** argv) {
    const int rows = argc > 1 ? std::atoi(argv[1]) : 4096;
    const int cols = argc > 2 ? std::atoi(argv[2]) : 4096;
    const int samples = argc > 3 ? std::atoi(argv[3]) : 128;
    const int seqLen = argc > 4 ? std::atoi(argv[4]) : 2048;
    const std::string dump = argc > 5 ? argv[5] : "";
    std::printf("bench_gptq: layer %d x %d, %d samples x %d tokens, 4-bit g128 sym, %d threads available\n", rows,
                cols, samples, seqLen, defaultThreadCount());

    // Weight: Gaussian with a few outlier input channels.
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> W(static_cast<size_t>(rows) * cols);
    for (auto& w : W) w = h16(0.02f * nd(rng));
    // Activations: 16 latent factors + noise, per-channel scales (some large), fp16-rounded.
    const int k = 16;
    std::vector<float> A(static_cast<size_t>(k) * cols), scale(cols);
    for (auto& a : A) a = nd(rng);
    for (int j = 0; j < cols; ++j) scale[j] = (j % 97 == 0 ? 8.0f : 1.0f) * (0.25f + std::fabs(nd(rng)));

    std::FILE* fx = nullptr;
    if (!dump.empty()) {
        std::string cmd = "mkdir -p '" + dump + "'";
        if (std::system(cmd.c_str()) != 0) return 1;
        std::FILE* fw = std::fopen((dump + "/W.f16").c_str(), "wb");
        std::vector<uint16_t> h(W.size());
        for (size_t i = 0; i < W.size(); ++i) h[i] = fp32ToFp16(W[i]);
        std::fwrite(h.data(), 2, h.size(), fw);
        std::fclose(fw);
        fx = std::fopen((dump + "/X.f16").c_str(), "wb");
    }

    gptq::HessianAccumulator acc(cols);
    std::vector<float> X(static_cast<size_t>(seqLen) * cols);
    std::vector<uint16_t> xh(X.size());
    double tHess = 0, cHess = 0;
    for (int s = 0; s < samples; ++s) {
        std::mt19937 r2(1000 + s);
        std::normal_distribution<float> n2(0.0f, 1.0f);
        for (int t = 0; t < seqLen; ++t) {
            float z[k];
            for (auto& v : z) v = n2(r2);
            for (int j = 0; j < cols; ++j) {
                float v = 0.5f * n2(r2);
                for (int i = 0; i < k; ++i) v += z[i] * A[static_cast<size_t>(i) * cols + j];
                X[static_cast<size_t>(t) * cols + j] = h16(0.25f * v * scale[j]);
            }
        }
        if (fx) {
            for (size_t i = 0; i < X.size(); ++i) xh[i] = fp32ToFp16(X[i]);
            std::fwrite(xh.data(), 2, xh.size(), fx);
        }
        const auto t0 = Clock::now();
        const double c0 = cpuNow();
        acc.add(X.data(), seqLen);
        tHess += secs(t0);
        cHess += cpuNow() - c0;
    }
    if (fx) std::fclose(fx);
    acc.countSample(samples);
    const auto H = acc.finish();
    std::printf("hessian: %.2f s wall, %.2f s CPU (%.1f GFLOP/s wall, lower triangle)\n", tHess, cHess,
                1e-9 * double(samples) * seqLen * cols * (cols + 1) / std::max(tHess, 1e-9));

    gptq::QuantConfig c;
    c.bits = 4;
    c.groupSize = 128;
    c.sym = true;
    const auto tr = Clock::now();
    const auto rtn = gptq::quantizeLayerRtn(W.data(), rows, cols, c);
    const double tRtn = secs(tr);
    const double eRtn = gptq::relativeOutputError(W.data(), gptq::dequantize(rtn), rows, cols, H);
    double tG[2] = {0, 0}, cG[2] = {0, 0}, eG = 0, loss = 0;
    const int threadCounts[2] = {1, defaultThreadCount()};
    for (int i = 0; i < 2; ++i) {
        c.threads = threadCounts[i];
        const auto t0 = Clock::now();
        const double c0 = cpuNow();
        auto g = gptq::quantizeLayerGptq(W.data(), rows, cols, H, c);
        tG[i] = secs(t0);
        cG[i] = cpuNow() - c0;
        if (!g) {
            std::fprintf(stderr, "GPTQ failed: %s\n", g.error().message.c_str());
            return 1;
        }
        eG = gptq::relativeOutputError(W.data(), gptq::dequantize(*g), rows, cols, H);
        loss = g->loss;
        if (threadCounts[1] == 1) {
            tG[1] = tG[0];
            cG[1] = cG[0];
            break;
        }
    }
    std::printf("gptq: %.2f s wall / %.2f s CPU (1 thread), %.2f s wall / %.2f s CPU (%d threads); loss %.4f; "
                "rel. output error %.6f\n", tG[0], cG[0], tG[1], cG[1], threadCounts[1], loss, eG);
    std::printf("rtn:  %.3f s; rel. output error %.6f  (gptq/rtn error ratio %.3f)\n", tRtn, eRtn, eG / eRtn);
    std::printf("total (hessian + gptq, all threads): %.2f s\n", tHess + tG[1]);
    if (!dump.empty()) {
        std::FILE* fm = std::fopen((dump + "/meta.json").c_str(), "w");
        std::fprintf(fm, "{\"rows\": %d, \"cols\": %d, \"samples\": %d, \"seqLen\": %d, \"bits\": 4, \"group_size\": 128,"
                         " \"sym\": true, \"damp\": 0.01}\n", rows, cols, samples, seqLen);
        std::fclose(fm);
        std::FILE* fo = std::fopen((dump + "/ours.json").c_str(), "w");
        std::fprintf(fo, "{\"hessian_s\": %.4f, \"gptq_s\": %.4f, \"threads\": %d, \"loss\": %.6f, \"rel_err\": %.8f,"
                         " \"rtn_rel_err\": %.8f}\n", tHess, tG[1], threadCounts[1], loss, eG, eRtn);
        std::fclose(fo);
        std::printf("dumped W.f16, X.f16, meta.json, ours.json to %s\n", dump.c_str());
    }
    return 0;
}

// EXL2 one-layer quantizer timing: prepareHessian and quantizeLinear (GPTQ) / quantizeLinearRtn on one
// out × in layer with a random SPD Hessian (diagonal + rank-64 term), for a few table settings.
// usage: bench_exl2_quant [in=4096] [out=4096] [threads=0 (all)] [reps=1]
// Prints wall seconds and process CPU seconds (all threads; less sensitive to other load on the machine).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>

#include <Eigen/Core>

#include "exl2/exl2_qparams.h"
#include "exl2/exl2_quant.h"

using namespace qz::exl2;

namespace {
double seconds(std::chrono::steady_clock::time_point a) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}
double cpuSeconds() {
    return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}
} // namespace

int main(int argc, char** argv) {
    const int in = argc > 1 ? std::atoi(argv[1]) : 4096;
    const int out = argc > 2 ? std::atoi(argv[2]) : 4096;
    const int threads = argc > 3 ? std::atoi(argv[3]) : 0;
    const int reps = argc > 4 ? std::atoi(argv[4]) : 1;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    const int rank = 64;
    Eigen::MatrixXf V(in, rank);
    for (int j = 0; j < rank; ++j)
        for (int i = 0; i < in; ++i)
            V(i, j) = nd(rng);
    Eigen::MatrixXf Hm = V * V.transpose() / static_cast<float>(rank);
    for (int i = 0; i < in; ++i)
        Hm(i, i) += 0.05f + 0.5f * std::fabs(nd(rng));
    std::vector<float> H(Hm.data(), Hm.data() + static_cast<size_t>(in) * in); // symmetric
    std::vector<float> W(static_cast<size_t>(out) * in);
    for (auto& w : W)
        w = nd(rng) * 0.02f;

    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpuSeconds();
    auto h = prepareHessian(H, in, {}, threads);
    if (!h) {
        std::fprintf(stderr, "%s\n", h.error().message.c_str());
        return 1;
    }
    std::printf("layer %d x %d (out x in), threads %d\n", out, in, threads);
    std::printf("prepareHessian: %.2f s (CPU %.2f s)\n", seconds(t0), cpuSeconds() - c0);
    const std::vector<QParams> settings = {attnOptions()[0][0], attnOptions()[4][0],  attnOptions()[6][0],
                                           attnOptions()[9][0], attnOptions()[14][0], attnOptions()[18][0],
                                           mlpOptions()[0][2]};
    for (const auto& qp : settings) {
        double tg = 1e30, tr = 1e30, cg = 1e30, cr = 1e30;
        for (int r = 0; r < reps; ++r) {
            t0 = std::chrono::steady_clock::now();
            c0 = cpuSeconds();
            auto q = quantizeLinear(W.data(), out, in, *h, qp, {}, threads);
            tg = std::min(tg, seconds(t0));
            cg = std::min(cg, cpuSeconds() - c0);
            if (!q) {
                std::fprintf(stderr, "%s\n", q.error().message.c_str());
                return 1;
            }
            t0 = std::chrono::steady_clock::now();
            c0 = cpuSeconds();
            auto rt = quantizeLinearRtn(W.data(), out, in, qp, threads);
            tr = std::min(tr, seconds(t0));
            cr = std::min(cr, cpuSeconds() - c0);
        }
        std::printf("%-44s bpw %.3f  GPTQ %.2f s (CPU %.2f)  RTN %.2f s (CPU %.2f)\n", qp.desc().c_str(),
                    qp.bpw(in, out), tg, cg, tr, cr);
    }
    return 0;
}

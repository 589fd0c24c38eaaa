// Quantized matrix × activations from stored weights: our ggml::quantizedLinear against llama.cpp's
// CPU backend doing the same product with its type traits (from_float once per token, then vec_dot per
// row and token), on a synthetic nOut × nIn matrix and nTok tokens, per weight type. Both sides split the
// rows over the same threads (common/parallel.h) and encode the activations inside the timed region.
// The ggml side is the prebuilt ggml-cpu library of the npm package node-llama-cpp (tests/llama/setup.sh
// once); its x86 level is chosen with QZ_BENCH_GGML_CPU (default "haswell": AVX2, the level of our
// kernels; llama.cpp itself loads the best level the CPU runs). Prints the CPU time of one product (all
// threads; best of QZ_BENCH_REPS rounds, default 3, ours and ggml's alternating, so that a loaded machine
// weighs on both alike), the ratio ggml/ours (> 1: we are faster) and the largest difference of the
// results relative to the largest |y| (a sanity check; test_vec_dot is the correctness proof).
// QZ_LLAMA_BINS overrides the library folder.
// Run: build/tests/bench/bench_vec_dot [nOut nIn nTok threads [TYPE ...]]   (defaults 4096 4096 64 all)
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "ggml/quantize.h"
#include "ggml/vec_dot.h"

using namespace qz;

namespace {

struct TraitsCpu { // ggml-cpu.h struct ggml_type_traits_cpu
    void (*fromFloat)(const float*, void*, int64_t);
    void (*vecDot)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
    int vecDotType;
    int64_t nrows;
};
using GetTraitsFn = const TraitsCpu* (*)(int);

double cpuMs() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Best CPU time (all threads) of a and of b over reps rounds, alternating so that both see the same
// machine load.
template <class A, class B> std::pair<double, double> bestCpuMs(int reps, A&& a, B&& b) {
    double ba = 1e300, bb = 1e300;
    for (int r = 0; r < reps; ++r) {
        double t0 = cpuMs();
        a();
        ba = std::min(ba, cpuMs() - t0);
        t0 = cpuMs();
        b();
        bb = std::min(bb, cpuMs() - t0);
    }
    return {ba, bb};
}

} // namespace

int main(int argc, char** argv) {
    const int64_t nOut = argc > 1 ? std::atoll(argv[1]) : 4096, nIn = argc > 2 ? std::atoll(argv[2]) : 4096;
    const int64_t nTok = argc > 3 ? std::atoll(argv[3]) : 64;
    const int threads = argc > 4 && std::atoi(argv[4]) > 0 ? std::atoi(argv[4]) : defaultThreadCount();
    std::vector<DType> types;
    for (int i = 5; i < argc; ++i)
        if (auto t = dtypeFromName(argv[i])) types.push_back(*t);
    if (types.empty())
        types = {DType::F16,    DType::BF16,   DType::Q4_0,    DType::Q4_1,  DType::Q5_0,  DType::Q5_1,
                 DType::Q8_0,   DType::Q2_K,   DType::Q3_K,    DType::Q4_K,  DType::Q5_K,  DType::Q6_K,
                 DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0,   DType::TQ2_0, DType::MXFP4, DType::IQ2_XXS,
                 DType::IQ2_XS, DType::IQ2_S,  DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M};
    const char* level = std::getenv("QZ_BENCH_GGML_CPU") ? std::getenv("QZ_BENCH_GGML_CPU") : "haswell";
    const int reps = std::getenv("QZ_BENCH_REPS") ? std::max(1, std::atoi(std::getenv("QZ_BENCH_REPS"))) : 3;
    std::string bins = __FILE__;
    bins = bins.substr(0, bins.find_last_of('/')) +
           "/../llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
    if (bins[0] !=
        '/') { // a path relative to the compiler's folder (ccache base dir): the build's tests folder
        std::vector<char> exe(4096, 0);
        const ssize_t len = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
        std::string dir(exe.data(), len > 0 ? static_cast<size_t>(len) : 0);
        bins = dir.substr(0, dir.find_last_of('/') + 1) + bins;
    }
    if (const char* e = std::getenv("QZ_LLAMA_BINS"); e && *e) bins = e;
    const std::string lib = bins + "/libggml-cpu-" + level + ".so";
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        std::fprintf(stderr, "cannot load %s (%s); run tests/llama/setup.sh\n", lib.c_str(), dlerror());
        return 1;
    }
    auto getTraits = reinterpret_cast<GetTraitsFn>(dlsym(h, "ggml_get_type_traits_cpu"));
    if (auto init = reinterpret_cast<void (*)()>(dlsym(h, "ggml_cpu_init"))) init();
    if (!getTraits) return 1;

    std::printf("W %lld x %lld, %lld tokens, %d threads, ggml-cpu level %s, best of %d\n", (long long)nOut,
                (long long)nIn, (long long)nTok, threads, level, reps);
    std::printf("%-8s %-7s %12s %12s %8s %11s\n", "type", "kernel", "ours cpu ms", "ggml cpu ms", "ggml/us",
                "max rel diff");

    // Weights: 64 distinct rows quantized by our quantizers, repeated (speed does not depend on values).
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 0.02f);
    const int64_t distinct = std::min<int64_t>(64, nOut);
    std::vector<float> wf(distinct * nIn), im(nIn, 1.f);
    for (auto& v : wf)
        v = nd(rng);
    std::vector<float> X(nIn * nTok);
    std::normal_distribution<float> xd(0.f, 1.f);
    for (auto& v : X)
        v = xd(rng);

    for (DType t : types) {
        const TraitsCpu* tr = getTraits(traits(t).ggmlId);
        const auto rowBytesOpt = bytesFor(t, nIn);
        if (!ggml::vecDotSupported(t) || !tr || !tr->vecDot || !rowBytesOpt) continue;
        const TraitsCpu* trVd = getTraits(tr->vecDotType);
        const size_t rowBytes = *rowBytesOpt;
        std::vector<uint8_t> slab(distinct * rowBytes), W(nOut * rowBytes);
        if (!ggml::quantizeTensor(t, wf.data(), distinct, nIn, im.data(), slab.data(), threads).ok())
            continue;
        for (int64_t r = 0; r < nOut; ++r)
            std::copy_n(slab.data() + (r % distinct) * rowBytes, rowBytes, W.data() + r * rowBytes);

        std::vector<float> Yours(nOut * nTok), Yggml(nOut * nTok);
        const size_t actBytes = ggml::vecDotRowBytes(t, nIn);
        std::vector<uint8_t> act(actBytes * nTok);
        const auto [ours, theirs] = bestCpuMs(
            reps,
            [&] {
                ggml::quantizedLinear(t, W.data(), rowBytes, nOut, nIn, X.data(), nTok, Yours.data(), nOut,
                                      threads);
            },
            [&] {
                parallelFor(
                    static_cast<size_t>(nTok),
                    [&](size_t j0, size_t j1, int) {
                        for (size_t j = j0; j < j1; ++j)
                            trVd->fromFloat(X.data() + j * nIn, act.data() + j * actBytes, nIn);
                    },
                    threads);
                parallelFor(
                    static_cast<size_t>(nOut),
                    [&](size_t r0, size_t r1, int) {
                        for (size_t i = r0; i < r1; ++i)
                            for (int64_t j = 0; j < nTok; ++j)
                                tr->vecDot(static_cast<int>(nIn), &Yggml[i + j * nOut], 0,
                                           W.data() + i * rowBytes, 0, act.data() + j * actBytes, 0, 1);
                    },
                    threads, 16);
            });
        double maxAbs = 0, maxDiff = 0;
        for (size_t i = 0; i < Yours.size(); ++i) {
            maxAbs = std::max(maxAbs, std::fabs(double(Yggml[i])));
            maxDiff = std::max(maxDiff, std::fabs(double(Yours[i]) - Yggml[i]));
        }
        std::printf("%-8s %-7s %12.1f %12.1f %8.2f %11.2e\n", dtypeName(t).data(), ggml::quantizedLinearKernelName(t),
                    ours, theirs, theirs / ours, maxAbs > 0 ? maxDiff / maxAbs : maxDiff);
        std::fflush(stdout);
    }
    return 0;
}

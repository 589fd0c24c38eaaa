// Prompt-evaluation speed of the inference engine on bard-llama (weights held as F32), 1 and 2 threads.
// Measures tokens/s for whole prompts of 128 and 512 tokens evaluated from an empty cache (logits for
// every position, as perplexity needs), best of several repetitions; also the time of a perplexity
// pass. Usage: bench_infer [model folder or .gguf] (default: tests/data/models/bard-llama).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "infer/engine.h"
#include "infer/matmul.h"
#include "infer/perplexity.h"

using namespace qz;
using Clock = std::chrono::steady_clock;

// CPU time of the whole process (all threads): on a shared, loaded machine wall time mostly measures
// the other processes, CPU time measures our work.
static double cpuSeconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
    // Default: the test data next to this source file (tests/bench/../data).
    std::string here = __FILE__;
    here = here.substr(0, here.find_last_of('/'));
    std::string path = argc > 1 ? argv[1] : here + "/../data/models/bard-llama";
    auto m = openModel(path);
    if (!m) {
        std::fprintf(stderr, "%s\n", m.error().message.c_str());
        return 1;
    }
    std::printf("model: %s\nlinear kernel: %s (QZ_NO_AVX2=1 forces Eigen)\n", path.c_str(), linearKernelName());
    double tps[2][2] = {};
    for (int threads : {1, 2}) {
        EngineOptions opt;
        opt.threads = threads;
        opt.nCtx = 512;
        auto e = Engine::load(**m, opt);
        if (!e) {
            std::fprintf(stderr, "%s\n", e.error().message.c_str());
            return 1;
        }
        Engine& en = **e;
        int si = 0;
        for (int n : {128, 512}) {
            std::vector<int32_t> toks(n);
            for (int i = 0; i < n; ++i) toks[i] = (i * 37 + 1) % en.nVocab();
            std::vector<float> logits(static_cast<size_t>(n) * en.nVocab());
            double best = 1e30, bestCpu = 1e30;
            const int reps = n == 128 ? 20 : 6;
            for (int r = 0; r < reps; ++r) {
                en.reset();
                const auto t0 = Clock::now();
                const double c0 = cpuSeconds();
                auto st = en.eval(toks, 0, logits.data(), 0);
                bestCpu = std::min(bestCpu, cpuSeconds() - c0);
                const double s = std::chrono::duration<double>(Clock::now() - t0).count();
                if (!st) {
                    std::fprintf(stderr, "%s\n", st.error().message.c_str());
                    return 1;
                }
                best = std::min(best, s);
            }
            tps[threads - 1][si++] = n / best;
            std::printf("threads %d  prompt %3d tokens: %8.1f tokens/s wall (%.2f ms), %8.1f tokens per CPU-second\n",
                        threads, n, n / best, best * 1e3, n / bestCpu);
        }
        // One perplexity pass: 32 chunks of 128 (synthetic tokens).
        std::vector<int32_t> toks(32 * 128);
        for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 131 + 7) % en.nVocab());
        PerplexityParams p = defaultPerplexityParams(en, 128, 32);
        const auto t0 = Clock::now();
        auto r = computePerplexity(en, toks, p);
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        if (!r) return 1;
        std::printf("threads %d  perplexity -c 128 --chunks 32: %.2f s\n", threads, s);
    }
    // The linear kernel alone against Eigen's GEMM (ffn_up-sized: 768 x 256 by 128 tokens), 1 thread.
    {
        const int64_t nOut = 768, nIn = 256, n = 128;
        std::vector<float> W(nOut * nIn, 0.01f), X(nIn * n, 0.5f), Y(nOut * n);
        auto time = [&](auto fn) {
            double best = 1e30;
            for (int r = 0; r < 30; ++r) {
                const auto t0 = Clock::now();
                fn(W.data(), nOut, nIn, X.data(), n, Y.data(), nOut, 1);
                best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
            }
            return 2.0 * nOut * nIn * n / best / 1e9;
        };
        const double k = time(linearForward), eg = time(linearForwardEigen);
        std::printf("linear 768x256 x 128 tokens, 1 thread: %.1f GFLOP/s (%s), Eigen %.1f GFLOP/s, ratio %.2f\n", k,
                    linearKernelName(), eg, k / eg);
    }
    std::printf("speed-up 2 threads / 1 thread: %.2f (128 tokens), %.2f (512 tokens)\n", tps[1][0] / tps[0][0],
                tps[1][1] / tps[0][1]);
    return 0;
}

// Per-type quantizer speed against llama.cpp's own ggml: qz::ggml::quantizeTensor vs ggml_quantize_chunk of
// the prebuilt libggml-base.so that tests/llama/setup.sh installs (npm node-llama-cpp 3.22.1; dlopen'ed,
// never linked). Same seeded tensor (rows x cols, Gaussian σ = 0.02 with a few outlier columns, as weights
// look), same synthetic importance matrix, in the same process.
//
// For every type, with and without an imatrix (without only where ggml accepts none), and every thread
// count: runs of the two implementations alternate (--reps each, best taken; a run repeats the call until
// ggml has used >= 0.2 s CPU), and it prints wall and CPU seconds per call (process CPU time, all threads:
// the stable figure on a shared machine) and the ratios ours / ggml (< 1 = we are faster). With T > 1 threads
// ggml runs as llama_model_quantize drives it (llama-quant.cpp llama_tensor_quantize_impl): T workers taking
// chunks of ceil(16384 / cols) rows from a shared counter, one ggml_quantize_chunk call per chunk. The
// outputs of each run are compared byte for byte; the exit status is non-zero when they differ.
//
// Usage: bench_quant_types_vs_ggml [--rows 256] [--cols 4096] [--types IQ2_XXS,...] [--threads 1,2]
//          [--reps 3] [--imatrix both|on|off] [--lib PATH/libggml-base.so]
#include <dlfcn.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "ggml/iquants.h"
#include "ggml/quantize.h"

using namespace qz;

namespace {

using QuantizeChunkFn = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
using QuantizeInitFn = void (*)(int);

double cpuSeconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}
double wallSeconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

struct Timing {
    double wall = 1e30, cpu = 1e30;
    void take(double w, double c) {
        wall = std::min(wall, w);
        cpu = std::min(cpu, c);
    }
};

} // namespace

int main(int argc, char** argv) {
    int64_t rows = 256, cols = 4096;
    int reps = 3;
    std::string imatrixMode = "both";
    std::vector<std::string> types = {"IQ2_XXS", "IQ2_XS", "IQ2_S",  "IQ3_XXS", "IQ3_S", "IQ1_S",
                                      "IQ1_M",   "IQ4_NL", "IQ4_XS", "TQ1_0",   "TQ2_0"};
    std::vector<int> threads = {1, 2};
    std::string libPath = std::string(QZ_BENCH_SOURCE_DIR) +
                          "/../llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : "";
        if (a == "--rows")
            rows = std::atoll(v), ++i;
        else if (a == "--cols")
            cols = std::atoll(v), ++i;
        else if (a == "--reps")
            reps = std::max(1, std::atoi(v)), ++i;
        else if (a == "--types")
            types = split(v), ++i;
        else if (a == "--imatrix")
            imatrixMode = v, ++i;
        else if (a == "--lib")
            libPath = v, ++i;
        else if (a == "--threads") {
            threads.clear();
            for (const auto& t : split(v))
                threads.push_back(std::max(1, std::atoi(t.c_str())));
            ++i;
        } else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (rows <= 0 || cols <= 0 || cols % 256 != 0) {
        std::fprintf(stderr, "--cols must be a positive multiple of 256, --rows positive\n");
        return 2;
    }
    void* h = dlopen(libPath.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        std::fprintf(stderr, "cannot load %s (run tests/llama/setup.sh): %s\n", libPath.c_str(), dlerror());
        return 2;
    }
    auto quantizeChunk = reinterpret_cast<QuantizeChunkFn>(dlsym(h, "ggml_quantize_chunk"));
    auto quantizeInit = reinterpret_cast<QuantizeInitFn>(dlsym(h, "ggml_quantize_init"));
    if (!quantizeChunk) {
        std::fprintf(stderr, "ggml_quantize_chunk missing from %s\n", libPath.c_str());
        return 2;
    }

    std::vector<float> x(static_cast<size_t>(rows * cols)), im(static_cast<size_t>(cols));
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 0.02f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            x[r * cols + c] = nd(rng) * (c % 97 == 0 ? 8.f : 1.f);
    std::uniform_real_distribution<float> ud(0.f, 2.f);
    for (auto& v : im)
        v = ud(rng) * ud(rng) * (rng() % 50 == 0 ? 30.f : 1.f);

    std::printf("tensor %lld x %lld, best of %d alternating runs; ratio = ours / ggml (< 1: ours faster)\n",
                static_cast<long long>(rows), static_cast<long long>(cols), reps);
    std::printf("%-8s %-4s %3s | %10s %10s | %10s %10s | %6s %6s | %s\n", "type", "imat", "thr", "ggml wall",
                "ggml CPU", "ours wall", "ours CPU", "wall", "CPU", "bytes");
    bool allSame = true;
    for (const auto& name : types) {
        const auto t = dtypeFromName(name);
        if (!t || !ggml::canQuantizeTo(*t)) {
            std::fprintf(stderr, "%s: not a type we quantize\n", name.c_str());
            return 2;
        }
        const int id = traits(*t).ggmlId;
        const size_t rowBytes = *bytesFor(*t, static_cast<uint64_t>(cols));
        if (quantizeInit) quantizeInit(id);
        std::vector<bool> modes;
        if (imatrixMode != "on" && !ggml::iquantRequiresImatrix(*t)) modes.push_back(false);
        if (imatrixMode != "off") modes.push_back(true);
        for (bool withIm : modes) {
            const float* imp = withIm ? im.data() : nullptr;
            for (int nt : threads) {
                std::vector<uint8_t> ours(rows * rowBytes, 0x11), theirs(rows * rowBytes, 0x22);
                const int64_t chunkRows = std::max<int64_t>(1, (16384 + cols - 1) / cols);
                auto runGgml = [&] {
                    if (nt <= 1) {
                        quantizeChunk(id, x.data(), theirs.data(), 0, rows, cols, imp);
                        return;
                    }
                    std::mutex mu;
                    int64_t next = 0;
                    auto work = [&] {
                        for (;;) {
                            int64_t first;
                            {
                                std::lock_guard<std::mutex> lock(mu);
                                first = next;
                                next += chunkRows;
                            }
                            if (first >= rows) return;
                            const int64_t n = std::min(chunkRows, rows - first);
                            quantizeChunk(id, x.data(), theirs.data(), first * cols, n, cols, imp);
                        }
                    };
                    std::vector<std::thread> pool;
                    const int64_t nchunk = (rows + chunkRows - 1) / chunkRows;
                    for (int64_t k = 0; k < std::min<int64_t>(nt, nchunk); ++k)
                        pool.emplace_back(work);
                    for (auto& th : pool)
                        th.join();
                };
                auto runOurs = [&] {
                    const Status st = ggml::quantizeTensor(*t, x.data(), rows, cols, imp, ours.data(), nt);
                    if (!st) {
                        std::fprintf(stderr, "%s: %s\n", name.c_str(), st.error().message.c_str());
                        std::exit(1);
                    }
                };
                // warm-up (our code books and ggml's quantize_init tables are built once per process), and
                // enough repetitions inside one timed run for >= 0.2 s of ggml CPU time
                runOurs();
                double c0 = cpuSeconds();
                runGgml();
                const int inner =
                    static_cast<int>(std::clamp(0.2 / std::max(1e-6, cpuSeconds() - c0), 1.0, 1000.0));
                Timing tg, to;
                for (int r = 0; r < reps; ++r) {
                    double w0 = wallSeconds();
                    c0 = cpuSeconds();
                    for (int k = 0; k < inner; ++k)
                        runGgml();
                    tg.take((wallSeconds() - w0) / inner, (cpuSeconds() - c0) / inner);
                    w0 = wallSeconds();
                    c0 = cpuSeconds();
                    for (int k = 0; k < inner; ++k)
                        runOurs();
                    to.take((wallSeconds() - w0) / inner, (cpuSeconds() - c0) / inner);
                }
                const bool same = ours == theirs;
                allSame = allSame && same;
                std::printf("%-8s %-4s %3d | %10.4f %10.4f | %10.4f %10.4f | %6.2f %6.2f | %s\n",
                            name.c_str(), withIm ? "yes" : "no", nt, tg.wall, tg.cpu, to.wall, to.cpu,
                            to.wall / tg.wall, to.cpu / tg.cpu, same ? "identical" : "DIFFER");
                std::fflush(stdout);
            }
        }
    }
    return allSame ? 0 : 1;
}

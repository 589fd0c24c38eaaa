// Speed of the K-quant row quantizers (ggml/kquants.h): a 4096 x 4096 F32 matrix (seeded Gaussian)
// quantized to each type, without and with an importance matrix, on 1 thread and on 2 threads (rows
// split in two halves, as the dispatcher does). Prints rows/s, input MB/s and rows per CPU-second.
// When llama.cpp's prebuilt libggml-base.so is installed (tests/llama/setup.sh), the same work is also
// timed through its ggml_quantize_chunk on 1 thread: "ggml rows/cpu-s" and "ours/ggml" (CPU time ratio,
// < 1 = we are faster), plus whether the bytes are identical.
//   usage: bench_kquants [rows] [cols]      (cols a multiple of 256)
#include <chrono>
#include <ctime>
#include <cstring>
#include <dlfcn.h>
#include <filesystem>
#include <string>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "ggml/kquants.h"

namespace {

using QuantizeChunkFn = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
using QuantizeInitFn = void (*)(int);

// libggml-base.so of tests/llama (found relative to this source file), or null.
struct Ggml {
    QuantizeChunkFn quantize = nullptr;
    QuantizeInitFn init = nullptr;
};
Ggml loadGgml() {
    Ggml g;
    const auto lib = std::filesystem::path(__FILE__).parent_path().parent_path() /
                     "llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
    if (!std::filesystem::exists(lib)) return g;
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) return g;
    g.quantize = reinterpret_cast<QuantizeChunkFn>(dlsym(h, "ggml_quantize_chunk"));
    g.init = reinterpret_cast<QuantizeInitFn>(dlsym(h, "ggml_quantize_init"));
    return g;
}

struct Type {
    const char* name;
    int ggmlId;
    int blockSize, typeSize;
    void (*fn)(const float*, uint8_t*, int64_t, int64_t, const float*);
};

// Returns wall seconds; cpuSeconds receives the process CPU time used (robust when the machine is busy).
double runOnce(const Type& t, const std::vector<float>& x, std::vector<uint8_t>& out, int64_t rows, int64_t cols,
               const float* imat, int threads, double& cpuSeconds) {
    const int64_t rowBytes = cols / t.blockSize * t.typeSize;
    const std::clock_t c0 = std::clock();
    const auto t0 = std::chrono::steady_clock::now();
    if (threads <= 1) {
        t.fn(x.data(), out.data(), rows, cols, imat);
    } else {
        std::vector<std::thread> pool;
        const int64_t per = (rows + threads - 1) / threads;
        for (int k = 0; k < threads; ++k) {
            const int64_t r0 = k * per, r1 = std::min(rows, r0 + per);
            if (r0 >= r1) break;
            pool.emplace_back([&, r0, r1] { t.fn(x.data() + r0 * cols, out.data() + r0 * rowBytes, r1 - r0, cols, imat); });
        }
        for (auto& th : pool) th.join();
    }
    cpuSeconds = double(std::clock() - c0) / CLOCKS_PER_SEC;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 4096;
    const int64_t cols = argc > 2 ? std::atoll(argv[2]) : 4096;
    if (rows <= 0 || cols <= 0 || cols % 256 != 0) {
        std::fprintf(stderr, "usage: %s [rows] [cols multiple of 256]\n", argv[0]);
        return 1;
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<float> x(rows * cols), imat(cols);
    for (auto& v : x) v = nd(rng);
    for (auto& v : imat) v = std::abs(nd(rng)) * 50.f + 1e-3f;

    const Type types[] = {{"Q2_K", 10, 256, 84, qz::ggml::quantizeRowsQ2_K},
                          {"Q3_K", 11, 256, 110, qz::ggml::quantizeRowsQ3_K},
                          {"Q4_K", 12, 256, 144, qz::ggml::quantizeRowsQ4_K},
                          {"Q5_K", 13, 256, 176, qz::ggml::quantizeRowsQ5_K},
                          {"Q6_K", 14, 256, 210, qz::ggml::quantizeRowsQ6_K},
                          {"IQ4_NL", 20, 32, 18, qz::ggml::quantizeRowsIQ4_NL},
                          {"IQ4_XS", 23, 256, 136, qz::ggml::quantizeRowsIQ4_XS}};
    const Ggml ggml = loadGgml();
    const double mb = double(rows) * cols * 4 / 1e6;
    std::printf("bench_kquants: %lld x %lld F32 (%.1f MB), hardware threads %u\n", (long long)rows, (long long)cols, mb,
                std::thread::hardware_concurrency());
    std::printf("llama.cpp libggml-base.so: %s\n", ggml.quantize ? "found (tests/llama)" : "not installed, no comparison");
    std::printf("%-7s %-8s %8s %12s %10s %14s %8s %12s %10s %7s %16s %10s %9s\n", "type", "imatrix", "1T s",
                "1T rows/s", "1T MB/s", "1T rows/cpu-s", "2T s", "2T rows/s", "2T MB/s", "2T/1T", "ggml rows/cpu-s",
                "ours/ggml", "same");
    for (const auto& t : types) {
        std::vector<uint8_t> out(rows * (cols / t.blockSize) * t.typeSize);
        for (const float* im : {static_cast<const float*>(nullptr), static_cast<const float*>(imat.data())}) {
            double c1 = 0, c2 = 0;
            const double s1 = runOnce(t, x, out, rows, cols, im, 1, c1);
            const double s2 = runOnce(t, x, out, rows, cols, im, 2, c2);
            std::printf("%-7s %-8s %8.3f %12.0f %10.1f %14.0f %8.3f %12.0f %10.1f %7.2f", t.name, im ? "yes" : "no", s1,
                        rows / s1, mb / s1, rows / c1, s2, rows / s2, mb / s2, s1 / s2);
            if (ggml.quantize) {
                std::vector<uint8_t> ref(out.size());
                if (ggml.init) ggml.init(t.ggmlId);
                const std::clock_t g0 = std::clock();
                ggml.quantize(t.ggmlId, x.data(), ref.data(), 0, rows, cols, im);
                const double cg = double(std::clock() - g0) / CLOCKS_PER_SEC;
                std::printf(" %16.0f %10.2f %9s", rows / cg, c1 / cg, ref == out ? "yes" : "NO");
            }
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    return 0;
}

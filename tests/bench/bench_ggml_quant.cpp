// Throughput of quantizeTensor (per type, 1 thread and all threads) and of dequantization through
// convertToF32 (as histograms and readTensorF32 use it), on a 4096 x 4096 synthetic tensor.
// Prints measurements only. Run: build-*/tests/bench/bench_ggml_quant [rows] [cols]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/parallel.h"
#include "ggml/dequantize.h"
#include "ggml/quantize.h"
#include "model/convert.h"

using namespace qz;

int main(int argc, char** argv) {
    const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 4096, cols = argc > 2 ? std::atoll(argv[2]) : 4096;
    std::vector<float> x(rows * cols), y(rows * cols);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 0.02f);
    for (auto& v : x) v = nd(rng);
    const int nt = defaultThreadCount();
    std::printf("tensor %lld x %lld (%.1f M weights), %d threads\n", (long long)rows, (long long)cols,
                rows * cols / 1e6, nt);
    std::printf("%-7s %12s %12s %12s %14s\n", "type", "q 1thr ms", "q all ms", "deq all ms", "deq Mweights/s");
    for (DType t : {DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                    DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL}) {
        if (!ggml::canQuantizeTo(t)) continue;
        std::vector<uint8_t> q(rows * *bytesFor(t, cols));
        auto time = [&](auto fn) {
            const auto a = std::chrono::steady_clock::now();
            fn();
            return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
        };
        const double q1 = time([&] { (void)ggml::quantizeTensor(t, x.data(), rows, cols, nullptr, q.data(), 1); });
        const double qa = time([&] { (void)ggml::quantizeTensor(t, x.data(), rows, cols, nullptr, q.data(), 0); });
        const double d = time([&] { (void)convertToF32(t, q.data(), rows * cols, y.data()); });
        std::printf("%-7s %12.1f %12.1f %12.1f %14.0f\n", dtypeName(t).data(), q1, qa, d, rows * cols / d / 1e3);
    }
    return 0;
}

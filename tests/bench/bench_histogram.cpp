// Histogram speed on a 4096×14336 BF16 tensor (a Llama-3-8B / Mistral-7B FFN matrix).
// Prints the time of QuantZoo's histogramRaw (65536-pattern table), and, as the reference run in the
// same process, a plain loop that converts each value and bins it on one thread; their ratio.
//   usage: bench_histogram [rows cols] [repeats]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "common/parallel.h"
#include "stats/histogram.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
    const long rows = argc > 2 ? std::atol(argv[1]) : 4096, cols = argc > 2 ? std::atol(argv[2]) : 14336;
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
    const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
    std::vector<uint16_t> data(n);
    {
        std::mt19937 rng(42);
        std::normal_distribution<float> nd(0.f, 0.02f);
        for (auto& v : data) v = qz::fp32ToBf16(nd(rng));
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
    double best = 1e9, bestRef = 1e9;
    uint64_t check = 0, checkRef = 0;
    for (int r = 0; r < repeats; ++r) {
        auto t0 = Clock::now();
        const qz::Histogram h = qz::histogramRaw(qz::DType::BF16, bytes, n, 150, -0.1, 0.1);
        best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        check = h.total();
        t0 = Clock::now();
        qz::Histogram ref(150, -0.1, 0.1);
        for (size_t i = 0; i < n; ++i) ref.add(qz::bf16ToFp32(data[i]));
        bestRef = std::min(bestRef, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        checkRef = ref.total();
    }
    std::printf("histogram of %ldx%ld BF16 (%zu values), 150 bins, %d threads, best of %d:\n", rows, cols, n,
                qz::defaultThreadCount(), repeats);
    std::printf("  quantzoo histogramRaw : %8.2f ms\n  reference scalar loop : %8.2f ms\n  speed-up              : %8.2fx\n",
                best, bestRef, bestRef / best);
    if (check != n || checkRef != n) {
        std::printf("ERROR: counts differ from the number of values\n");
        return 1;
    }
    return 0;
}

#include "common/parallel.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace qz {

namespace {
constexpr long kMaxThreads = 1024;  // upper limit of the QZ_THREADS override
}  // namespace

// The quantizers and statistics do not depend on the thread count: their work is split into pieces fixed by
// the data, threads only choose which pieces they compute (test_gptq_quant, test_exl2_quant, test_histogram).
int defaultThreadCount() {
    if (const char* env = std::getenv("QZ_THREADS")) {
        // 1..1024; anything else (empty, garbage, out of range) is ignored rather than trusted.
        char* end = nullptr;
        errno = 0;
        const long n = std::strtol(env, &end, 10);
        if (errno == 0 && end != env && *end == '\0' && n >= 1 && n <= kMaxThreads)
            return static_cast<int>(n);
    }
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

void parallelFor(size_t n, const std::function<void(size_t, size_t, int)>& fn, int threads, size_t minChunk) {
    if (n == 0) return;
    if (threads <= 0) threads = defaultThreadCount();
    minChunk = std::max<size_t>(1, minChunk);
    const size_t maxChunks = std::max<size_t>(1, n / minChunk);
    const size_t chunks = std::min<size_t>(static_cast<size_t>(threads), maxChunks);
    if (chunks <= 1) {
        fn(0, n, 0);
        return;
    }
    // Every chunk runs to its end whatever another does: an exception is caught where it is thrown (an
    // uncaught one in a std::thread would terminate the program) and the first is rethrown after the join.
    std::mutex mutex;
    std::exception_ptr first;
    auto run = [&](size_t b, size_t e, int c) noexcept {
        try {
            fn(b, e, c);
        } catch (...) {
            const std::lock_guard<std::mutex> lock(mutex);
            if (!first) first = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(chunks - 1);
    const size_t per = n / chunks, extra = n % chunks;
    size_t begin = 0;
    size_t firstEnd = 0;
    for (size_t c = 0; c < chunks; ++c) {
        const size_t end = begin + per + (c < extra ? 1 : 0);
        if (c == 0) {
            firstEnd = end;
        } else {
            try {
                pool.emplace_back(run, begin, end, static_cast<int>(c));
            } catch (const std::system_error&) { // no thread to be had: this chunk runs here (its slot is free)
                run(begin, end, static_cast<int>(c));
            }
        }
        begin = end;
    }
    run(0, firstEnd, 0);
    for (auto& t : pool) t.join();
    if (first) std::rethrow_exception(first);
}

}  // namespace qz

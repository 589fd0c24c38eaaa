// libFuzzer harness: importance-matrix files, GGUF and legacy .dat (core/ggml/imatrix.h), and the
// lookup the quantizers do on the result.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ggml/imatrix.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto im = qz::ggml::parseImatrix(std::span<const uint8_t>(data, size), "fuzz.imatrix");
    if (!im) return 0;
    for (const auto& [name, values] : im->values) {
        const int64_t n = static_cast<int64_t>(values.size());
        auto p = im->lookup(name, n, 1);
        if (!p || !*p) __builtin_trap(); // an entry's own size must be accepted
        volatile float sink = 0;
        for (int64_t i = 0; i < n; ++i)
            sink = sink + (*p)[i];
        (void)im->lookup(name, n + 1, 1);
        (void)im->lookup(name, 1, n + 1);
    }
    return 0;
}

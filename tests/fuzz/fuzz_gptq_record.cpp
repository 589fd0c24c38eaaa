// libFuzzer harness: the GPTQ exporter's per-layer resume records (core/gptq/gptq_layers.h).
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "gptq/gptq_layers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static qzfuzz::MemFile file("fuzz.layer");
    auto r = qz::gptq::loadLayerRecord(file.write(data, size));
    if (r) {
        const auto& l = r->result;
        if (l.codes.size() != static_cast<size_t>(l.rows) * static_cast<size_t>(l.cols)) __builtin_trap();
        if (l.gIdx.size() != static_cast<size_t>(l.cols)) __builtin_trap();
    }
    return 0;
}

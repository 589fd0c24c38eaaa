// libFuzzer harness: the safetensors header parser (core/io/safetensors.h) and the duplicate-key
// checking JSON parser it shares with the config readers.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto h = qz::parseSafetensorsBytes(data, size, "fuzz.safetensors");
    if (h) {
        // A valid header: every tensor lies inside the input, past the header.
        for (const auto& t : h->tensors)
            if (t.offset < h->dataStart || t.offset > size || t.nbytes > size - t.offset) __builtin_trap();
    }
    (void)qz::parseJsonNoDuplicates(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    return 0;
}

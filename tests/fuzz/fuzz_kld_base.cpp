// libFuzzer harness: the KL-divergence base file (llama-perplexity's logits file, core/infer/perplexity.h).
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "infer/perplexity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static qzfuzz::MemFile file("fuzz.kld");
    auto b = qz::loadKldBase(file.write(data, size));
    if (b) {
        if (b->tokens.size() != static_cast<size_t>(b->nCtx) * static_cast<size_t>(b->nChunks))
            __builtin_trap();
    }
    return 0;
}

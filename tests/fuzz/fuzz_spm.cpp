// libFuzzer harness: the SentencePiece model protobuf parser (core/tokenizer/spm_model.h).
#include <cstddef>
#include <cstdint>
#include <span>

#include "tokenizer/spm_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)qz::parseSpmModel(std::span<const uint8_t>(data, size), "fuzz.model");
    return 0;
}

// libFuzzer harness: the GGUF reader (core/gguf) as the application opens a file: the container, the
// Model built from it, the engine's hyper-parameters, the vocabulary and tokenizer from its tokenizer.*
// keys, and the values of every small tensor (dequantized from the file's bytes).
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "fuzz_vocab_use.h"
#include "gguf/gguf_reader.h"
#include "infer/hparams.h"
#include "model/model.h"
#include "tokenizer/model_vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static qzfuzz::MemFile file("fuzz.gguf");
    auto model = qz::openGgufModel(file.write(data, size));
    if (!model) return 0;
    const qz::Model& m = **model;
    (void)qz::readInferHParams(m);
    if (auto v = qz::vocabForModel(m)) qzfuzz::exerciseVocab(*v);
    for (const auto& t : m.tensors) {
        if (t.numel() > (1u << 16)) continue;
        (void)qz::readTensorF32(m, t);
    }
    return 0;
}

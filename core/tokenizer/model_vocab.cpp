#include "tokenizer/model_vocab.h"

#include <filesystem>

#include "gguf/gguf_reader.h"
#include "tokenizer/gguf_vocab.h"

namespace qz {

Result<Vocab> vocabForModel(const Model& model, const HfVocabOptions& options) {
    switch (model.format) {
        case ModelFormat::Gguf: {
            const GgufFile* g = ggufOf(model);
            if (!g) return makeError(model.path + ": GGUF key/values are not available");
            return vocabFromGguf(*g);
        }
        case ModelFormat::HuggingFaceFolder:
            return loadHfVocab(model.path, model.configJson, options);
        case ModelFormat::SafetensorsFile: {
            const std::string dir = std::filesystem::path(model.path).parent_path().string();
            return loadHfVocab(dir.empty() ? "." : dir, model.configJson, options);
        }
    }
    return makeError(model.path + ": unknown model format");
}

}  // namespace qz

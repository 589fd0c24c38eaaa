#include "infer/text_tokens.h"

#include "gguf/gguf_reader.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/tokenizer.h"

namespace qz {

Result<PerplexityInput> tokenizeForPerplexity(const Model& model, std::string_view text, bool forceBos) {
    Result<Vocab> vocab = makeError("no tokenizer");
    if (model.format == ModelFormat::Gguf) {
        const GgufFile* f = ggufOf(model);
        if (!f) return makeError(model.path + ": GGUF data not available");
        vocab = vocabFromGguf(*f);
    } else if (model.format == ModelFormat::HuggingFaceFolder) {
        vocab = loadHfVocab(model.path, model.configJson);
    } else {
        return makeError(model.path + ": a single .safetensors file has no tokenizer; open its folder");
    }
    if (!vocab) return vocab.error();
    auto tok = Tokenizer::create(*vocab);
    if (!tok) return tok.error();
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    PerplexityInput in;
    in.tokens = (*tok)->encode(text, true, false);
    in.params.bosId = (*tok)->bos();
    in.params.addBos = (*tok)->addBos() && in.params.bosId >= 0;
    if (forceBos && !in.params.addBos) {
        if (in.params.bosId < 0) return makeError(model.path + ": the vocabulary has no BOS token");
        in.tokens.insert(in.tokens.begin(), in.params.bosId);
        in.params.addBos = true;
    }
    return in;
}

}  // namespace qz

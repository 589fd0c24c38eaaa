// Text -> token ids for perplexity, as llama-perplexity prepares them: the model's own tokenizer
// (HF folder: tokenizer/hf_vocab.h; GGUF: the tokenizer.* keys), one trailing '\n' of the text dropped
// (its -f option does that), then llama_tokenize(text, add_special = true, parse_special = false), i.e.
// BOS prepended when the vocabulary adds BOS. The returned params carry addBos / bosId for
// computePerplexity (each chunk's first token is then replaced by BOS).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "infer/perplexity.h"
#include "model/model.h"

namespace qz {

struct PerplexityInput {
    std::vector<int32_t> tokens;
    PerplexityParams params;  // addBos / bosId filled; nCtx / nChunks left at their defaults
};

// forceBos: use BOS even when the vocabulary does not add it (prepend it, replace chunk starts) -
// llama.cpp's published bard-gpt2 figure was produced that way.
Result<PerplexityInput> tokenizeForPerplexity(const Model& model, std::string_view text, bool forceBos = false);

}  // namespace qz

// Runs a vocabulary read from a fuzzed file through the tokenizer: a hostile vocab (merges, scores,
// special ids) must give a clean error or a working tokenizer.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace qzfuzz {

inline void exerciseVocab(const qz::Vocab& vocab) {
    auto tok = qz::Tokenizer::create(vocab);
    if (!tok) return;
    const std::string_view text = "Hello world! <s> 123 \xc3\xa9t\xc3\xa9\n  ok";
    const std::vector<int32_t> ids = (*tok)->encode(text, true, true);
    for (int32_t id : ids)
        if (id < 0 || id >= (*tok)->size()) __builtin_trap(); // encode must only produce vocab ids
    (void)(*tok)->decode(ids, false, true);
    (void)(*tok)->detokenize(ids);
}

} // namespace qzfuzz

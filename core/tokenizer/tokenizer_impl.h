// Internal state of qz::Tokenizer shared by tokenizer.cpp (setup, special tokens, decoding),
// spm_tokenize.cpp and bpe_tokenize.cpp. Not part of the public API.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace qz {

struct StringViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

struct Tokenizer::Impl {
    Kind kind = Kind::Spm;
    tok::PreTokenizer pre = tok::PreTokenizer::Gpt2;
    bool ignoreMerges = false;  // llama-bpe: a word that is a token is used as is
    bool spmWordSplit = false;  // SPM: no token has U+2581 after another character (see spm_tokenize.cpp)

    std::vector<std::string> text;
    std::vector<float> score;
    std::vector<TokenType> type;
    TokenMap textToId;        // last id wins for duplicate texts, as in llama.cpp
    TokenMap mergeRank;       // "left right" -> rank (first occurrence wins)
    std::array<int32_t, 256> byteToken{};  // SPM byte fallback ids (-1: none)
    std::vector<int32_t> specialByLength;  // CONTROL / USER_DEFINED / UNKNOWN ids, longest text first

    int32_t bos = -1, eos = -1, unk = -1, pad = -1;
    bool addBos = false, addEos = false, addSpacePrefix = false;
    bool cleanSpaces = false;   // llama_detokenize's clean-up (BPE except the qwen2 group)

    int32_t find(std::string_view s) const {
        auto it = textToId.find(s);
        return it == textToId.end() ? -1 : it->second;
    }

    // Tokenizes one fragment of plain text (no special tokens in it), appending ids.
    void spmTokenize(std::string_view fragment, std::vector<int32_t>& out,
                     std::unordered_map<std::string, std::vector<int32_t>>& cache) const;
    void spmMerge(std::string_view escaped, std::vector<int32_t>& out) const;
    void bpeTokenize(std::string_view fragment, std::vector<int32_t>& out,
                     std::unordered_map<std::string, std::vector<int32_t>>& cache) const;
};

}  // namespace qz

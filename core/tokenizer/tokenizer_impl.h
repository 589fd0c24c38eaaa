// Internal state of qz::Tokenizer shared by tokenizer.cpp (setup, special tokens, decoding),
// spm_tokenize.cpp and bpe_tokenize.cpp. Not part of the public API.
#pragma once

#include <array>
#include <cstddef>
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

// The merge loop shared by SPM and BPE: `sym` is a doubly linked list of symbols over the text
// (members prev, next, len; len 0 once merged into the left neighbour), `queue` a priority queue of
// candidate merges (members left, right, len = the merged byte length when queued), `tryAdd(left, right)`
// pushes the candidate for two neighbours if the vocabulary has it. The best candidate is merged until
// none is left; candidates made stale by an earlier merge are recognised by their length and dropped.
template <class Symbols, class Queue, class TryAdd>
void mergeSymbols(Symbols& sym, Queue& queue, TryAdd&& tryAdd) {
    using Index = decltype(sym[0].prev);
    for (size_t i = 1; i < sym.size(); ++i) tryAdd(Index(i - 1), Index(i));
    while (!queue.empty()) {
        const auto b = queue.top();
        queue.pop();
        auto& l = sym[size_t(b.left)];
        auto& r = sym[size_t(b.right)];
        if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[size_t(r.next)].prev = b.left;
        tryAdd(l.prev, b.left);
        tryAdd(b.left, l.next);
    }
}

}  // namespace qz

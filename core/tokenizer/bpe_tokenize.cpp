// Byte-level BPE as llama.cpp does it (llm_tokenizer_bpe): pre-tokenizer words, GPT-2 byte
// alphabet, pairwise merges by lowest rank (ties: leftmost), leftover symbols per character.
#include <queue>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace qz {

namespace {

struct Symbol {
    int32_t prev;
    int32_t next;
    uint32_t start;
    uint32_t len;
};

struct Bigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    uint32_t len;
};

struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        if (a.rank != b.rank) return a.rank > b.rank;  // top = lowest rank
        return a.left > b.left;                         // then leftmost
    }
};

}  // namespace

void Tokenizer::Impl::bpeTokenize(std::string_view fragment, std::vector<int32_t>& out,
                                  std::unordered_map<std::string, std::vector<int32_t>>& cache) const {
    std::vector<size_t> lengths;
    tok::splitWords(fragment, pre, lengths);
    std::vector<Symbol> sym;
    std::string key;
    size_t offset = 0;
    for (size_t wl : lengths) {
        const std::string_view raw = fragment.substr(offset, wl);
        offset += wl;
        auto cached = cache.find(std::string(raw));
        if (cached != cache.end()) {
            out.insert(out.end(), cached->second.begin(), cached->second.end());
            continue;
        }
        std::vector<int32_t> ids;
        const std::string word = tok::bytesToByteLevel(raw);
        const int32_t whole = ignoreMerges ? find(word) : -1;
        if (whole >= 0) {
            ids.push_back(whole);
        } else if (word.size() < (size_t(1) << 31)) {
            sym.clear();
            for (size_t pos = 0; pos < word.size();) {
                const size_t len = std::min(tok::utf8SeqLen(uint8_t(word[pos])), word.size() - pos);
                const auto idx = int32_t(sym.size());
                sym.push_back({idx - 1, idx + 1, uint32_t(pos), uint32_t(len)});
                pos += len;
            }
            sym.back().next = -1;
            std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
            const std::string_view w = word;
            auto tryAdd = [&](int32_t left, int32_t right) {
                if (left < 0 || right < 0) return;
                const Symbol& l = sym[size_t(left)];
                const Symbol& r = sym[size_t(right)];
                const std::string_view lt = w.substr(l.start, l.len);
                if (lt.find(' ', 1) != std::string_view::npos) return;  // no merge has such a left part
                key.assign(lt);
                key += ' ';
                key.append(w.substr(r.start, r.len));
                auto it = mergeRank.find(key);
                if (it == mergeRank.end()) return;
                queue.push({it->second, left, right, l.len + r.len});
            };
            mergeSymbols(sym, queue, tryAdd);
            for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) {
                const std::string_view piece = w.substr(sym[size_t(i)].start, sym[size_t(i)].len);
                const int32_t id = find(piece);
                if (id >= 0) {
                    ids.push_back(id);
                    continue;
                }
                // not a token: one token per character if there is one (llama.cpp drops the rest)
                for (size_t pos = 0; pos < piece.size();) {
                    const size_t len = std::min(tok::utf8SeqLen(uint8_t(piece[pos])), piece.size() - pos);
                    const int32_t cid = find(piece.substr(pos, len));
                    if (cid >= 0) ids.push_back(cid);
                    pos += len;
                }
            }
        }
        out.insert(out.end(), ids.begin(), ids.end());
        if (cache.size() < 200000) cache.emplace(std::string(raw), std::move(ids));
    }
}

}  // namespace qz

// SentencePiece-style tokenization as llama.cpp does it (llm_tokenizer_spm): greedy merging of
// adjacent symbols by the score of the token they form, then byte fallback for leftover pieces.
#include <queue>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace qz {

namespace {

struct Symbol {
    int64_t prev;
    int64_t next;
    size_t start;
    size_t len;  // 0 once merged into its left neighbour
};

struct Bigram {
    float score;
    int64_t left;
    int64_t right;
    size_t len;  // byte length of the merged text when queued
};

struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        // top = highest score, then leftmost
        if (a.score != b.score) return a.score < b.score;
        return a.left > b.left;
    }
};

}  // namespace

// Merges one piece of escaped text (starting at a character boundary) and appends its ids.
void Tokenizer::Impl::spmMerge(std::string_view s, std::vector<int32_t>& out) const {
    if (s.empty()) return;
    std::vector<Symbol> sym;
    sym.reserve(s.size());
    for (size_t pos = 0; pos < s.size();) {
        const size_t len = std::min(tok::utf8SeqLen(uint8_t(s[pos])), s.size() - pos);
        const int64_t idx = int64_t(sym.size());
        sym.push_back({idx - 1, idx + 1, pos, len});
        pos += len;
    }
    sym.back().next = -1;

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    auto tryAdd = [&](int64_t left, int64_t right) {
        if (left < 0 || right < 0) return;
        const size_t len = sym[size_t(left)].len + sym[size_t(right)].len;
        const int32_t id = find(s.substr(sym[size_t(left)].start, len));
        if (id < 0) return;
        queue.push({score[size_t(id)], left, right, len});
    };
    mergeSymbols(sym, queue, tryAdd);

    for (int64_t i = 0; i >= 0; i = sym[size_t(i)].next) {
        const Symbol& x = sym[size_t(i)];
        const std::string_view piece = s.substr(x.start, x.len);
        const int32_t id = find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (char ch : piece) {
            const int32_t bt = byteToken[uint8_t(ch)];
            if (bt >= 0) out.push_back(bt);
            else if (unk >= 0) out.push_back(unk);
        }
    }
}

void Tokenizer::Impl::spmTokenize(std::string_view fragment, std::vector<int32_t>& out,
                                  std::unordered_map<std::string, std::vector<int32_t>>& cache) const {
    static constexpr std::string_view kSpace = "\xE2\x96\x81";
    std::string textBuf;
    textBuf.reserve(fragment.size() + 4);
    if (addSpacePrefix) textBuf += kSpace;
    for (char ch : fragment) {
        if (ch == ' ') textBuf += kSpace;
        else textBuf += ch;
    }
    const std::string_view s = textBuf;
    if (!spmWordSplit) {
        spmMerge(s, out);
        return;
    }
    // No token contains "x\u2581" (a U+2581 after another character), so no token can span a
    // character boundary followed by U+2581: merging each such piece on its own gives the same
    // result as merging the whole text, and repeated pieces (words) are cached.
    auto flush = [&](size_t begin, size_t end) {
        if (end <= begin) return;
        const std::string_view piece = s.substr(begin, end - begin);
        auto it = cache.find(std::string(piece));
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
        std::vector<int32_t> ids;
        spmMerge(piece, ids);
        out.insert(out.end(), ids.begin(), ids.end());
        if (cache.size() < 200000) cache.emplace(std::string(piece), std::move(ids));
    };
    size_t segStart = 0;
    bool prevWasSpace = false;
    for (size_t pos = 0; pos < s.size();) {
        const size_t len = std::min(tok::utf8SeqLen(uint8_t(s[pos])), s.size() - pos);
        const bool isSpace = len == 3 && s.compare(pos, 3, kSpace) == 0;
        if (isSpace && !prevWasSpace && pos > segStart) {
            flush(segStart, pos);
            segStart = pos;
        }
        prevWasSpace = isSpace;
        pos += len;
    }
    flush(segStart, s.size());
}

}  // namespace qz

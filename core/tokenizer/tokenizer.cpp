#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace qz {

namespace {

// Pre-tokenizer names llama.cpp maps to the regexes we implement with no other behaviour change
// (src/llama-vocab.cpp; names that also add a SEP token, like roberta-bpe, are left out).
bool preTokenizerFor(const std::string& name, tok::PreTokenizer& pre, bool& llama3) {
    static const char* const kGpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                        "jina-v2-de", "a.x-4.0", "mellum"};
    static const char* const kLlama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                          "midm-2.0", "lfm2"};
    static const char* const kQwen2[] = {"qwen2", "deepseek-r1-qwen", "kormo", "megrez"};
    llama3 = false;
    for (const char* n : kGpt2)
        if (name == n) {
            pre = tok::PreTokenizer::Gpt2;
            return true;
        }
    for (const char* n : kLlama3)
        if (name == n) {
            pre = tok::PreTokenizer::Llama3;
            llama3 = true;
            return true;
        }
    for (const char* n : kQwen2)
        if (name == n) {
            pre = tok::PreTokenizer::Qwen2;
            return true;
        }
    return false;
}

struct Fragment {
    bool isToken;
    int32_t id;
    size_t offset;
    size_t length;
};

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : m(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::create(const Vocab& v) {
    try {
        auto im = std::make_unique<Impl>();
        const size_t n = v.tokens.size();
        if (n == 0) return makeError("tokenizer: the vocab has no tokens");
        if (n > size_t(INT32_MAX)) return makeError("tokenizer: the vocab is too large");
        if (!v.scores.empty() && v.scores.size() != n) return makeError("tokenizer: scores do not match the tokens");
        if (!v.tokenTypes.empty() && v.tokenTypes.size() != n)
            return makeError("tokenizer: token types do not match the tokens");

        int32_t defBos, defEos, defUnk;
        if (v.model == "llama") {
            im->kind = Kind::Spm;
            defBos = 1, defEos = 2, defUnk = 0;
            im->addBos = true;
            im->addSpacePrefix = true;
        } else if (v.model == "gpt2") {
            im->kind = Kind::Bpe;
            defBos = 11, defEos = 11, defUnk = -1;
            const std::string pre = v.pre.empty() ? "default" : v.pre;
            bool llama3 = false;
            if (!preTokenizerFor(pre, im->pre, llama3))
                return makeError("tokenizer: BPE pre-tokenizer \"" + pre + "\" is not supported (supported: gpt-2, llama-bpe, qwen2)");
            im->ignoreMerges = llama3;
            im->addBos = llama3;
            im->cleanSpaces = im->pre != tok::PreTokenizer::Qwen2;
            if (v.merges.empty()) return makeError("tokenizer: BPE vocab without merges");
        } else {
            return makeError("tokenizer: tokenizer model \"" + v.model + "\" is not supported (only llama/SPM and gpt2/BPE)");
        }

        im->text = v.tokens;
        im->score = v.scores.empty() ? std::vector<float>(n, 0.0f) : v.scores;
        im->type.resize(n, TokenType::Normal);
        for (size_t i = 0; i < n && !v.tokenTypes.empty(); ++i) {
            const int32_t t = v.tokenTypes[i];
            im->type[i] = (t >= 0 && t <= 6) ? TokenType(t) : TokenType::Undefined;
        }
        im->textToId.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            if (im->text[i].empty()) {
                im->text[i] = "[EMPTY_" + std::to_string(i) + "]";
            }
            im->textToId[im->text[i]] = int32_t(i);
        }
        if (im->kind == Kind::Spm) {
            // Can the text be cut before each run of U+2581 (see spm_tokenize.cpp)? Only if no token
            // has a U+2581 right after a character that is not U+2581.
            static constexpr std::string_view kSpace = "\xE2\x96\x81";
            bool ok = true;
            for (size_t i = 0; i < n && ok; ++i) {
                const std::string_view t = im->text[i];
                for (size_t k = t.find(kSpace, 1); k != std::string_view::npos && ok; k = t.find(kSpace, k + 1))
                    ok = k >= 3 && t.compare(k - 3, 3, kSpace) == 0;
            }
            im->spmWordSplit = ok;
        }
        if (im->kind == Kind::Bpe) {
            im->mergeRank.reserve(v.merges.size());
            for (size_t r = 0; r < v.merges.size() && r < size_t(INT32_MAX); ++r) {
                const std::string& mg = v.merges[r];
                const size_t sp = mg.find(' ', 1);
                if (sp == std::string::npos || sp + 1 > mg.size()) continue;
                im->mergeRank.emplace(mg, int32_t(r));
            }
        }
        for (int b = 0; b < 256; ++b) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "<0x%02X>", b);
            int32_t id = im->find(buf);
            if (id < 0) id = im->find(std::string(1, char(b)));
            im->byteToken[size_t(b)] = id;
        }

        auto pick = [&](const char* kind, int32_t def) -> int32_t {
            if (auto id = v.specialId(kind); id && *id < n) return int32_t(*id);
            return def >= 0 && size_t(def) < n ? def : -1;
        };
        im->bos = pick("bos", defBos);
        im->eos = pick("eos", defEos);
        im->unk = pick("unk", defUnk);
        im->pad = pick("pad", -1);
        if (auto f = v.addFlag("bos")) im->addBos = *f;
        if (auto f = v.addFlag("eos")) im->addEos = *f;
        if (v.addSpacePrefix) im->addSpacePrefix = *v.addSpacePrefix;
        if (im->kind == Kind::Bpe) im->addSpacePrefix = false;  // llama.cpp's BPE path ignores it

        for (size_t i = 0; i < n; ++i) {
            const TokenType t = im->type[i];
            if (t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown)
                im->specialByLength.push_back(int32_t(i));
        }
        std::stable_sort(im->specialByLength.begin(), im->specialByLength.end(), [&](int32_t a, int32_t b) {
            return im->text[size_t(a)].size() > im->text[size_t(b)].size();
        });
        return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(im)));
    } catch (const std::exception& e) {
        return makeError(std::string("tokenizer: ") + e.what());
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool addSpecial, bool parseSpecial) const {
    const Impl& im = *m;
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (addSpecial && im.addBos && im.bos >= 0) out.push_back(im.bos);

    if (!text.empty()) {
        // Cut special tokens out of the text, longest first.
        std::vector<Fragment> frags{{false, -1, 0, text.size()}};
        std::vector<Fragment> next;
        for (int32_t id : im.specialByLength) {
            const TokenType t = im.type[size_t(id)];
            if (!parseSpecial && (t == TokenType::Control || t == TokenType::Unknown)) continue;
            const std::string& st = im.text[size_t(id)];
            if (st.empty()) continue;
            next.clear();
            bool changed = false;
            for (const Fragment& f : frags) {
                if (f.isToken || f.length < st.size()) {
                    next.push_back(f);
                    continue;
                }
                const std::string_view raw = text.substr(f.offset, f.length);
                size_t from = 0;
                while (from < raw.size()) {
                    const size_t hit = raw.find(st, from);
                    if (hit == std::string_view::npos) break;
                    if (hit > from) next.push_back({false, -1, f.offset + from, hit - from});
                    next.push_back({true, id, 0, 0});
                    from = hit + st.size();
                    changed = true;
                }
                if (from < raw.size()) next.push_back({false, -1, f.offset + from, raw.size() - from});
            }
            if (changed) frags.swap(next);
        }

        std::unordered_map<std::string, std::vector<int32_t>> cache;
        for (const Fragment& f : frags) {
            if (f.isToken) {
                out.push_back(f.id);
                continue;
            }
            const std::string_view raw = text.substr(f.offset, f.length);
            if (im.kind == Kind::Spm) {
                // llama.cpp prefixes a space when the previous fragment was special or at the start;
                // two text fragments are never adjacent, so that is every text fragment.
                im.spmTokenize(raw, out, cache);
            } else {
                im.bpeTokenize(raw, out, cache);
            }
        }
    }
    if (addSpecial && im.addEos && im.eos >= 0) out.push_back(im.eos);
    return out;
}

std::string Tokenizer::tokenToPiece(int32_t id, bool renderSpecial) const {
    const Impl& im = *m;
    if (id < 0 || size_t(id) >= im.text.size()) return {};
    const TokenType t = im.type[size_t(id)];
    const std::string& s = im.text[size_t(id)];
    switch (t) {
        case TokenType::Control:
        case TokenType::Unknown:
            return renderSpecial ? s : std::string();
        case TokenType::UserDefined:
            return s;
        case TokenType::Normal:
            if (im.kind == Kind::Spm) {
                std::string r;
                r.reserve(s.size());
                for (size_t i = 0; i < s.size(); ++i) {
                    if (s.compare(i, 3, "\xE2\x96\x81") == 0) {
                        r += ' ';
                        i += 2;
                    } else {
                        r += s[i];
                    }
                }
                return r;
            }
            return tok::byteLevelToBytes(s);
        case TokenType::Byte:
            if (im.kind == Kind::Spm) {
                auto hex = [](char c) {
                    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                          : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                };
                if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' && hex(s[3]) >= 0 && hex(s[4]) >= 0)
                    return std::string(1, char(hex(s[3]) * 16 + hex(s[4])));
                return s;
            }
            return {};
        default:
            return {};
    }
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool removeSpecial, bool renderSpecial) const {
    const Impl& im = *m;
    bool removeSpace = im.addSpacePrefix;
    size_t begin = 0, end = ids.size();
    if (removeSpecial && im.addBos && end > 0 && ids[0] == im.bos) {
        removeSpace = false;
        begin = 1;
    }
    if (removeSpecial && im.addEos && end > begin && ids[end - 1] == im.eos) --end;
    std::string out;
    for (size_t i = begin; i < end; ++i) {
        std::string piece = tokenToPiece(ids[i], renderSpecial);
        if (removeSpace && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
        removeSpace = false;
        out += piece;
    }
    return out;
}

std::string Tokenizer::detokenize(std::span<const int32_t> ids, bool removeSpecial, bool renderSpecial) const {
    std::string t = decode(ids, removeSpecial, renderSpecial);
    if (!m->cleanSpaces || t.empty()) return t;
    // 1: drop the space before ? ! . ,
    std::string a;
    a.reserve(t.size());
    a += t[0];
    for (size_t i = 1; i < t.size(); ++i) {
        const char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
        a += x;
    }
    // 2: " ' " -> "'" (the dropped space after it no longer counts as a space before the next one)
    std::string b;
    b.reserve(a.size());
    b += a[0];
    size_t dropped = 0;  // index + 1 of the last dropped space, 0 if none
    for (size_t i = 1; i < a.size(); ++i) {
        const char x = a[i];
        if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && dropped != i && a[i + 1] == ' ') {
            b.pop_back();
            b += x;
            ++i;  // the space after it goes too
            dropped = i + 1;
            continue;
        }
        b += x;
    }
    // 3: " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it)
    std::string c;
    c.reserve(b.size());
    c += b[0];
    for (size_t i = 1; i < b.size(); ++i) {
        const char x = b[i];
        if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
            const char x1 = b[i + 1];
            const char x2 = i + 2 < b.size() ? b[i + 2] : '\0';
            if (x1 == 's' || x1 == 'm' || (x2 == 'e' && (x1 == 'r' || x1 == 'v'))) c.pop_back();
        }
        c += x;
    }
    return c;
}

Tokenizer::Kind Tokenizer::kind() const { return m->kind; }
int32_t Tokenizer::size() const { return int32_t(m->text.size()); }
int32_t Tokenizer::bos() const { return m->bos; }
int32_t Tokenizer::eos() const { return m->eos; }
int32_t Tokenizer::unk() const { return m->unk; }
int32_t Tokenizer::pad() const { return m->pad; }
bool Tokenizer::addBos() const { return m->addBos; }
bool Tokenizer::addEos() const { return m->addEos; }

TokenType Tokenizer::tokenType(int32_t id) const {
    return id >= 0 && size_t(id) < m->type.size() ? m->type[size_t(id)] : TokenType::Undefined;
}

const std::string& Tokenizer::tokenText(int32_t id) const {
    static const std::string empty;
    return id >= 0 && size_t(id) < m->text.size() ? m->text[size_t(id)] : empty;
}

std::optional<int32_t> Tokenizer::findToken(std::string_view text) const {
    const int32_t id = m->find(text);
    if (id < 0) return std::nullopt;
    return id;
}

}  // namespace qz

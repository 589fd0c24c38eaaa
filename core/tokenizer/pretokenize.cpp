#include "tokenizer/pretokenize.h"

#include <cstdint>

#include "tokenizer/unicode.h"

namespace qz::tok {

namespace {

struct Char {
    uint32_t cp;
    size_t offset;  // byte offset in the text
    CharClass cls;
};

bool isNl(uint32_t cp) { return cp == '\r' || cp == '\n'; }

uint32_t asciiLower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

// Length (in characters) of a contraction at i ('s 't 're 've 'm 'll 'd), 0 if none.
size_t contraction(const std::vector<Char>& c, size_t i, bool ignoreCase) {
    const size_t n = c.size();
    if (c[i].cp != '\'' || i + 1 >= n) return 0;
    const auto low = [&](size_t k) { return ignoreCase ? asciiLower(c[k].cp) : c[k].cp; };
    const uint32_t a = low(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 < n) {
        const uint32_t b = low(i + 2);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

// \s+(?!\S) then \s+, for a run of white space starting at i (c[i] is white space).
size_t whitespaceRun(const std::vector<Char>& c, size_t i) {
    const size_t n = c.size();
    size_t e = i;
    while (e < n && c[e].cls == CharClass::Space) ++e;
    if (e == n) return e;          // \s+(?!\S): nothing follows
    if (e - i >= 2) return e - 1;  // \s+(?!\S): leave the last space for the next word
    return e;                      // \s+
}

size_t matchGpt2(const std::vector<Char>& c, size_t i) {
    const size_t n = c.size();
    if (size_t k = contraction(c, i, false)) return i + k;
    const size_t k0 = (c[i].cp == ' ' && i + 1 < n) ? i + 1 : i;
    const CharClass cls = c[k0].cls;
    if (cls != CharClass::Space) {  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
        size_t k = k0;
        while (k < n && c[k].cls == cls) ++k;
        return k;
    }
    return whitespaceRun(c, i);
}

size_t matchLlama3(const std::vector<Char>& c, size_t i, size_t maxDigits) {
    const size_t n = c.size();
    if (size_t k = contraction(c, i, true)) return i + k;
    const CharClass cls = c[i].cls;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (cls == CharClass::Letter || (cls != CharClass::Number && !isNl(c[i].cp) && i + 1 < n &&
                                     c[i + 1].cls == CharClass::Letter)) {
        size_t k = i + 1;
        while (k < n && c[k].cls == CharClass::Letter) ++k;
        return k;
    }
    // \p{N}{1,maxDigits}
    if (cls == CharClass::Number) {
        size_t k = i + 1;
        while (k < n && k - i < maxDigits && c[k].cls == CharClass::Number) ++k;
        return k;
    }
    // ' '?[^\s\p{L}\p{N}]+[\r\n]*
    const size_t k0 = (c[i].cp == ' ' && i + 1 < n) ? i + 1 : i;
    if (c[k0].cls == CharClass::Other) {
        size_t k = k0;
        while (k < n && c[k].cls == CharClass::Other) ++k;
        while (k < n && isNl(c[k].cp)) ++k;
        return k;
    }
    // \s*[\r\n]+ : the white space run up to and including its last newline
    size_t e = i;
    size_t lastNl = SIZE_MAX;
    while (e < n && c[e].cls == CharClass::Space) {
        if (isNl(c[e].cp)) lastNl = e;
        ++e;
    }
    if (lastNl != SIZE_MAX) return lastNl + 1;
    return whitespaceRun(c, i);
}

}  // namespace

void splitWords(std::string_view text, PreTokenizer kind, std::vector<size_t>& wordLengths) {
    std::vector<Char> chars;
    chars.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t start = pos;
        const uint32_t cp = decodeUtf8(text, pos);
        chars.push_back({cp, start, cp == kInvalidCodepoint ? CharClass::Other : charClass(cp)});
    }
    const size_t n = chars.size();
    size_t i = 0;
    while (i < n) {
        size_t j;
        switch (kind) {
            case PreTokenizer::Gpt2: j = matchGpt2(chars, i); break;
            case PreTokenizer::Llama3: j = matchLlama3(chars, i, 3); break;
            default: j = matchLlama3(chars, i, 1); break;
        }
        if (j <= i) j = i + 1;  // cannot happen: every character matches an alternative
        const size_t begin = chars[i].offset;
        const size_t end = j < n ? chars[j].offset : text.size();
        wordLengths.push_back(end - begin);
        i = j;
    }
}

}  // namespace qz::tok

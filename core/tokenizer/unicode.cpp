#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace qz::tok {

namespace {

bool isWhiteSpace(uint32_t cp) {
    // Unicode White_Space property (PropList.txt).
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

CharClass lookupClass(uint32_t cp) {
    const uint32_t* begin = detail::kUnicodeClassRuns;
    const uint32_t* end = begin + detail::kUnicodeClassRunCount;
    // Last run whose first code point is <= cp.
    const uint32_t key = (cp << 2) | 3u;
    const uint32_t* it = std::upper_bound(begin, end, key);
    if (it == begin) return CharClass::Other;
    switch (*(it - 1) & 3u) {
        case 1: return CharClass::Letter;
        case 2: return CharClass::Number;
        default: return CharClass::Other;
    }
}

struct ByteTables {
    std::array<std::string, 256> toUnicode;
    std::array<int16_t, 512> fromCodepoint;  // all mapped code points are < 0x144
    ByteTables() {
        fromCodepoint.fill(-1);
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
            appendUtf8(toUnicode[b], cp);
            fromCodepoint[cp] = int16_t(b);
        }
    }
};

const ByteTables& byteTables() {
    static const ByteTables t;
    return t;
}

struct AsciiClasses {
    std::array<CharClass, 128> c;
    AsciiClasses() {
        for (uint32_t i = 0; i < 128; ++i) c[i] = isWhiteSpace(i) ? CharClass::Space : lookupClass(i);
    }
};

}  // namespace

CharClass charClass(uint32_t cp) {
    static const AsciiClasses ascii;
    if (cp < 128) return ascii.c[cp];
    if (cp > 0x10FFFF) return CharClass::Other;
    if (isWhiteSpace(cp)) return CharClass::Space;
    return lookupClass(cp);
}

uint32_t decodeUtf8(std::string_view s, size_t& pos) {
    const auto byte = [&](size_t i) { return uint8_t(s[i]); };
    const uint8_t b0 = byte(pos);
    if (b0 < 0x80) {
        ++pos;
        return b0;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2;
        cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3;
        cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4;
        cp = b0 & 0x07;
    } else {
        ++pos;
        return kInvalidCodepoint;
    }
    if (pos + len > s.size()) {
        ++pos;
        return kInvalidCodepoint;
    }
    for (size_t i = 1; i < len; ++i) {
        const uint8_t b = byte(pos + i);
        if ((b & 0xC0) != 0x80) {
            ++pos;
            return kInvalidCodepoint;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        ++pos;
        return kInvalidCodepoint;
    }
    pos += len;
    return cp;
}

void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

const std::string& byteToUnicode(uint8_t b) { return byteTables().toUnicode[b]; }

int unicodeToByte(uint32_t cp) { return cp < 512 ? byteTables().fromCodepoint[cp] : -1; }

std::string bytesToByteLevel(std::string_view bytes) {
    const auto& t = byteTables();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) out += t.toUnicode[uint8_t(c)];
    return out;
}

std::string byteLevelToBytes(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t start = pos;
        const uint32_t cp = decodeUtf8(text, pos);
        const int b = cp == kInvalidCodepoint ? -1 : unicodeToByte(cp);
        if (b >= 0) out += char(b);
        else out.append(text.substr(start, pos - start));
    }
    return out;
}

}  // namespace qz::tok

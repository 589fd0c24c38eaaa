// Unicode helpers for the tokenizers: UTF-8 decoding (tolerant of invalid bytes), the character
// classes used by the BPE pre-tokenizer regexes (\p{L}, \p{N}, \s = White_Space), and GPT-2's
// byte <-> unicode mapping (each byte 0..255 is shown as a printable code point; bytes that are
// printable Latin-1 map to themselves, the others to U+0100 + n in byte order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qz::tok {

enum class CharClass : uint8_t { Other, Letter, Number, Space };

// Class of a code point: Space (Unicode White_Space property) first, then Letter (L*), Number (N*).
CharClass charClass(uint32_t cp);

// Byte length of a UTF-8 sequence from its first byte as llama.cpp counts it (continuation or
// invalid lead bytes count as 1). Never 0.
inline size_t utf8SeqLen(uint8_t lead) {
    static const uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

// Decodes one code point at s[pos] and advances pos. An invalid or truncated sequence yields
// kInvalidCodepoint and advances by exactly one byte (so the raw bytes are kept by the caller).
constexpr uint32_t kInvalidCodepoint = 0xFFFFFFFFu;
uint32_t decodeUtf8(std::string_view s, size_t& pos);

void appendUtf8(std::string& out, uint32_t cp);

// GPT-2 byte-level mapping.
const std::string& byteToUnicode(uint8_t b);  // UTF-8 text of the code point standing for byte b
int unicodeToByte(uint32_t cp);               // -1 if cp is not one of the 256 code points

// Bytes of text written with the byte-level alphabet (the form of byte-level BPE tokens).
std::string bytesToByteLevel(std::string_view bytes);
// Inverse: byte-level text back to raw bytes. Code points outside the alphabet are copied as UTF-8.
std::string byteLevelToBytes(std::string_view text);

namespace detail {
extern const uint32_t kUnicodeClassRuns[];
extern const size_t kUnicodeClassRunCount;
}  // namespace detail

}  // namespace qz::tok

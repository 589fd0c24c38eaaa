// Hand-written equivalents of the BPE pre-tokenizer regexes (PCRE semantics: leftmost alternative
// that matches, greedy quantifiers with backtracking), over Unicode classes from tokenizer/unicode.h:
//
// Gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//         \s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2:  as Llama3 with \p{N} instead of \p{N}{1,3}
//
// Every character matches one of the alternatives, so the words tile the text. Invalid UTF-8 bytes
// count as one "other" character each (llama.cpp would first turn them into U+FFFD).
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace qz::tok {

enum class PreTokenizer { Gpt2, Llama3, Qwen2 };

// Appends the byte length of each word of text, in order (their sum is text.size()).
void splitWords(std::string_view text, PreTokenizer kind, std::vector<size_t>& wordLengths);

}  // namespace qz::tok

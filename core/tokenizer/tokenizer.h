// Tokenizer: text -> token ids -> text, giving the same ids as llama.cpp (llama_tokenize /
// llama_detokenize / llama_token_to_piece) for the vocab types QuantZoo exports:
//
// * SPM ("llama"): the text gets a leading space when add_space_prefix (the default), every ' '
//   becomes U+2581; the text is split into UTF-8 characters, then adjacent pairs whose
//   concatenation is a token are merged, highest token score first (ties: leftmost), until no pair
//   is a token; a piece that is not a token is written as its bytes' <0xNN> tokens.
// * Byte-level BPE ("gpt2"): the text is split into words by the pre-tokenizer regex (GPT-2's for
//   "gpt-2", Llama 3's for "llama-bpe", Qwen2's for "qwen2"; implemented by hand in
//   tokenizer/pretokenize.h), each word's bytes are written with GPT-2's byte alphabet and merged
//   pairwise by merge rank (lowest first, ties leftmost).
// Before either, special tokens are cut out of the text: USER_DEFINED tokens always, CONTROL /
// UNKNOWN tokens only with parseSpecial; longest token text first. addSpecial adds BOS / EOS as the
// vocab's add_bos / add_eos say (llama.cpp's defaults: SPM add_bos, llama-bpe add_bos).
//
// Not supported (create() fails): other tokenizer models (bert, t5, rwkv, ...) and other BPE
// pre-tokenizers (deepseek-llm, falcon, starcoder, ...).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "tokenizer/vocab.h"

namespace qz {

class Tokenizer {
public:
    enum class Kind { Spm, Bpe };

    static Result<std::unique_ptr<Tokenizer>> create(const Vocab& vocab);
    ~Tokenizer();
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // llama_tokenize(text, add_special, parse_special). Thread-safe (const, no shared caches).
    std::vector<int32_t> encode(std::string_view text, bool addSpecial, bool parseSpecial = false) const;
    // llama_detokenize(ids, remove_special, unparse_special) without its clean-up of spaces (see
    // detokenize); ids out of range are skipped.
    // SPM: a leading space of the first token's piece is dropped; when the first token is a BOS (kept,
    // rendered or removed) nothing is dropped, as in llama.cpp: decode([BOS, "▁Hello"]) = " Hello".
    // decode(encode(t, false)) == t for valid UTF-8 (and for any bytes with byte-level BPE).
    std::string decode(std::span<const int32_t> ids, bool removeSpecial = false, bool renderSpecial = false) const;
    // Exactly llama_detokenize: decode() followed, for the BPE vocabs where llama.cpp does it (gpt-2 and
    // llama-bpe groups; not qwen2, not SPM), by its clean-up of spaces: " ?", " !", " .", " ," lose the
    // space, " ' " becomes "'", " 's" / " 'm" / " 're" / " 've" lose the space. Not a round trip.
    std::string detokenize(std::span<const int32_t> ids, bool removeSpecial = false, bool renderSpecial = false) const;
    // llama_token_to_piece(id, lstrip = 0, special = renderSpecial): CONTROL / UNKNOWN tokens give ""
    // unless renderSpecial; BYTE tokens give their byte; ids out of range give "".
    std::string tokenToPiece(int32_t id, bool renderSpecial = false) const;

    Kind kind() const;
    int32_t size() const;  // n_vocab
    int32_t bos() const;   // -1 when the vocab has none
    int32_t eos() const;
    int32_t unk() const;
    int32_t pad() const;
    bool addBos() const;
    bool addEos() const;
    TokenType tokenType(int32_t id) const;
    const std::string& tokenText(int32_t id) const;  // the raw vocab text ("" out of range)
    std::optional<int32_t> findToken(std::string_view text) const;

    struct Impl;

private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m;
};

}  // namespace qz

// Vocab: exactly what a GGUF file's tokenizer.* keys hold (README.md A.3), so that the GGUF writer
// can write them and the tokenizers (tokenizer/tokenizer.h) can be built from them.
//
//   tokenizer.ggml.model        "llama" (SentencePiece) | "gpt2" (byte-level BPE)
//   tokenizer.ggml.pre          pre-tokenizer name ("default" for SPM; "gpt-2", "llama-bpe", "qwen2", ...)
//   tokenizer.ggml.tokens       STRING[]   token texts, id order
//   tokenizer.ggml.scores       FLOAT32[]  (SPM; absent for BPE)
//   tokenizer.ggml.token_type   INT32[]    1 NORMAL 2 UNKNOWN 3 CONTROL 4 USER_DEFINED 5 UNUSED 6 BYTE
//   tokenizer.ggml.merges       STRING[]   "left right" (BPE), rank = index
//   tokenizer.ggml.<kind>_token_id  UINT32 (bos, eos, unknown, seperator, padding, cls, mask, eot, ...)
//   tokenizer.ggml.add_<kind>_token BOOL   (add_bos_token, add_eos_token, add_sep_token)
//   tokenizer.ggml.add_space_prefix BOOL, tokenizer.chat_template STRING
//
// Loaders: loadHfVocab (tokenizer/hf_vocab.h) builds it from a Hugging Face folder the way
// llama.cpp's convert_hf_to_gguf.py does; vocabFromGguf (tokenizer/gguf_vocab.h) from a parsed GGUF
// (through vocabFromGgufKvs below); vocabForModel (tokenizer/model_vocab.h) from any opened Model.
// Writing: tokenizerGgufKvs (tokenizer/gguf_vocab.h) gives the typed GGUF key/values in convert's order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace qz {

enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

// kind: "bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot", "eom", "fim_pre", ...
struct SpecialTokenId {
    std::string kind;
    uint32_t id = 0;
};
// kind: "bos", "eos", "sep" (tokenizer.ggml.add_<kind>_token)
struct AddTokenFlag {
    std::string kind;
    bool value = false;
};

struct Vocab {
    std::string model;                    // tokenizer.ggml.model
    std::string pre;                      // tokenizer.ggml.pre (empty = key absent)
    std::vector<std::string> tokens;      // tokenizer.ggml.tokens
    std::vector<float> scores;            // tokenizer.ggml.scores (empty = key absent)
    std::vector<int32_t> tokenTypes;      // tokenizer.ggml.token_type (empty = key absent)
    std::vector<std::string> merges;      // tokenizer.ggml.merges (empty = key absent)
    std::vector<SpecialTokenId> specialIds;  // in the order the keys are (to be) written
    std::vector<AddTokenFlag> addFlags;      // in the order the keys are (to be) written
    std::optional<bool> addSpacePrefix;      // tokenizer.ggml.add_space_prefix
    std::optional<std::string> chatTemplate; // tokenizer.chat_template
    std::vector<std::string> warnings;       // non-fatal problems met while loading, for display

    std::optional<uint32_t> specialId(std::string_view kind) const;
    std::optional<bool> addFlag(std::string_view kind) const;
    void setSpecialId(std::string_view kind, uint32_t id);  // replaces or appends
    void setAddFlag(std::string_view kind, bool value);     // replaces or appends
    size_t size() const { return tokens.size(); }
};

// GGUF key of a special id kind: "bos" -> "tokenizer.ggml.bos_token_id", "unk" ->
// "tokenizer.ggml.unknown_token_id", "sep" -> "tokenizer.ggml.seperator_token_id" (sic), "pad" ->
// "tokenizer.ggml.padding_token_id"; other kinds -> "tokenizer.ggml.<kind>_token_id".
std::string ggufSpecialIdKey(std::string_view kind);
// Inverse of ggufSpecialIdKey for a key ending in "_token_id"; nullopt for other keys.
std::optional<std::string> specialKindFromGgufKey(std::string_view key);

// One tokenizer.* key/value as stored in a GGUF (only the value types the tokenizer keys use).
struct TokenizerKv {
    enum class Type { U32, I32, Bool, String, StringArray, F32Array, I32Array, Other };
    std::string key;
    Type type = Type::Other;
    uint64_t u = 0;  // U32 / I32 (as signed cast) value
    bool b = false;
    std::string str;
    std::vector<std::string> strings;
    std::vector<float> f32s;
    std::vector<int32_t> i32s;
};

// The tokenizer.* key/values to write for a Vocab, in the order convert_hf_to_gguf.py writes them:
// model, pre, tokens, scores, token_type, merges, special ids, add flags, add_space_prefix,
// chat_template (absent members are skipped). The arrays are copied.
std::vector<TokenizerKv> tokenizerKvsForGguf(const Vocab& v);

// Builds a Vocab from a GGUF's key/values (other keys are ignored). Types are checked as strictly as
// llama.cpp does: tokenizer.ggml.model and .tokens are required, scores must be FLOAT32[n],
// token_type INT32[n], ids UINT32, flags BOOL. A special id >= n_vocab is dropped with a warning.
Result<Vocab> vocabFromGgufKvs(const std::vector<TokenizerKv>& kvs);

}  // namespace qz

// Vocab from a Hugging Face model folder, built the way llama.cpp's convert_hf_to_gguf.py builds the
// GGUF tokenizer.* keys (README.md A.3):
//
// SentencePiece (tokenizer.model present; model "llama", pre "default"):
//   every piece with its score and type (NORMAL unless UNKNOWN / CONTROL / UNUSED / BYTE); ids up to
//   config.vocab_size that have no piece are "[PAD{i}]", score -10000, UNUSED; added_tokens.json
//   entries get score -1000, USER_DEFINED; tokenizer_config.json added_tokens_decoder entries get
//   score -1000 and CONTROL (special, or looking special: "<|...|>", "<pad>", ...) else USER_DEFINED
//   (with U+2581 replaced by a space).
// Byte-level BPE (tokenizer.json with a BPE model, or vocab.json + merges.txt; model "gpt2"):
//   tokens in id order up to config.vocab_size (missing ids "[PAD{i}]", UNUSED); added tokens
//   CONTROL if special (or special-looking) else USER_DEFINED; no scores; merges from tokenizer.json
//   model.merges ("a b" strings, or [a, b] pairs joined with a space, spaces inside written as U+0120)
//   or merges.txt; pre-tokenizer name from the pre-tokenizer regex: GPT-2's -> "gpt-2",
//   Llama 3's -> "llama-bpe", Qwen2's -> "qwen2".
// Special ids and flags (gguf-py SpecialVocab), for kinds bos, eos, unk, sep, pad, cls, mask:
//   tokenizer_config.json "<kind>_token" (string or {content}) looked up among tokenizer.json's
//   added_tokens, then config.json "<kind>_token_id"; ids >= n_vocab are ignored with a warning;
//   add_bos / add_eos / add_sep from tokenizer_config.json "add_<kind>_token" when it is a bool;
//   chat template from tokenizer_config.json "chat_template" (a string).
#pragma once

#include <string>

#include "common/result.h"
#include "tokenizer/vocab.h"

namespace qz {

struct HfVocabOptions {
    // An unrecognised BPE pre-tokenizer is an error unless this is set; then pre = "default" and a
    // warning is added to Vocab::warnings (llama.cpp would then split text differently from HF).
    bool allowUnknownPreTokenizer = false;
};

// dir: the model folder. configJson: the text of config.json (Model::configJson); if empty,
// dir/config.json is read (a missing config.json is allowed: no vocab_size / ids from it).
Result<Vocab> loadHfVocab(const std::string& dir, const std::string& configJson = {},
                          const HfVocabOptions& options = {});

// The pre-tokenizer name for a regex pattern (as written in tokenizer.json), or "" if unknown.
std::string preTokenizerNameForRegex(const std::string& pattern);

}  // namespace qz

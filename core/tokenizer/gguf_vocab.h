// Adapters between a Vocab and the GGUF key/values of gguf/gguf_file.h:
//   vocabFromGguf(file)        reads the tokenizer.* keys of a parsed GGUF (see tokenizer/vocab.h for
//                              the checks, which are llama.cpp's);
//   tokenizerGgufKvs(vocab)    the tokenizer.* key/values to write, with the exact GGUF types
//                              (UINT32 ids, BOOL flags, FLOAT32[] scores, INT32[] types), in
//                              convert_hf_to_gguf.py's order.
#pragma once

#include <vector>

#include "common/result.h"
#include "gguf/gguf_file.h"
#include "tokenizer/vocab.h"

namespace qz {

Result<Vocab> vocabFromGguf(const GgufFile& file);
std::vector<GgufKV> tokenizerGgufKvs(const Vocab& vocab);

}  // namespace qz

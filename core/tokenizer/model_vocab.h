// The vocab of an opened Model, whatever its format:
//   GGUF                 -> the file's tokenizer.* keys (vocabFromGguf);
//   Hugging Face folder  -> loadHfVocab(folder, Model::configJson);
//   single .safetensors  -> loadHfVocab on the folder that holds the file (tokenizer files next to it).
// An error says why no tokenizer could be built (no tokenizer files, unsupported type, bad file).
#pragma once

#include "common/result.h"
#include "model/model.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/vocab.h"

namespace qz {

Result<Vocab> vocabForModel(const Model& model, const HfVocabOptions& options = {});

}  // namespace qz

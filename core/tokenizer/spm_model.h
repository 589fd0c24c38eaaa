// SentencePiece model file (tokenizer.model) reader: a hand-written, bounds-checked parser of the
// protobuf message sentencepiece.ModelProto — only the parts a GGUF vocab needs:
//   ModelProto      { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//                     NormalizerSpec normalizer_spec = 3; ... (other fields skipped) }
//   SentencePiece   { string piece = 1; float score = 2; Type type = 3 (default NORMAL) }
//                   Type: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
//   TrainerSpec     { model_type = 3 (UNIGRAM 1, BPE 2, WORD 3, CHAR 4); byte_fallback = 35;
//                     unk_id = 40; bos_id = 41; eos_id = 42; pad_id = 43 }
//   NormalizerSpec  { name = 1; add_dummy_prefix = 3 (default true); remove_extra_whitespaces = 4 }
// Wire format: each field is a varint key (field << 3 | wire type) followed by a varint (type 0),
// 8 bytes (1), a varint length + bytes (2) or 4 bytes (5). The file is hostile input.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace qz {

struct SpmPiece {
    std::string piece;
    float score = 0.0f;
    int32_t type = 1;  // NORMAL
};

struct SpmModel {
    std::vector<SpmPiece> pieces;
    int32_t modelType = 1;  // UNIGRAM
    bool byteFallback = false;
    int32_t unkId = 0, bosId = 1, eosId = 2, padId = -1;
    std::string normalizerName;
    bool addDummyPrefix = true;
    bool removeExtraWhitespaces = true;
};

// `what` names the data in error messages (usually the file path).
Result<SpmModel> parseSpmModel(std::span<const uint8_t> data, const std::string& what);
Result<SpmModel> loadSpmModel(const std::string& path);

}  // namespace qz

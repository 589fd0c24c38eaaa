// GGUF v3 reader: opens a .gguf file as a Model (tensors as views into the mapped file, metadata
// key/values kept for display and for re-export). Implementation: gguf/gguf_reader.cpp; the
// container itself is parsed and validated by gguf/gguf_file.h.
//
// The Model gets: format Gguf; name = general.name or the file name; architecture =
// general.architecture; metadata = every key/value in file order with its display string (long
// arrays summarised, e.g. "[string × 32000]"); one TensorInfo per tensor in file order with
// shape = ne reversed (outermost first), the dtype of its ggml type (types QuantZoo cannot
// dequantize still load, readTensorF32 then fails with a clear message), absolute offset and
// byte count; formatData = the parsed GgufFile, reachable through ggufOf().
//
// A model split by gguf-split (README.md A.8) is opened from its first part, NAME-00001-of-0000N.gguf:
// the other parts are found beside it by name, each checked (split.no, split.count, unique tensor names,
// the total against split.tensors.count), and their tensors appended with their own fileIndex. The
// metadata and ggufOf() are the first part's (gguf-split writes every key/value there). Opening any
// other part is an error naming the first one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "gguf/gguf_file.h"
#include "model/model.h"

namespace qz {

Result<std::shared_ptr<Model>> openGgufModel(const std::string& path);

// gguf-split's file names (README.md A.8): PREFIX-%05d-of-%05d.gguf with the 1-based part number.
std::string ggufSplitPath(const std::string& prefix, uint32_t splitIndex, uint32_t splitCount);
// The prefix for an output path: the path without a trailing ".gguf".
std::string ggufSplitPrefix(const std::string& path);
// Adds the tensors of the other parts when `first` (already in m as file 0) carries split.count.
Status addGgufSplits(Model& m, const GgufFile& first);

// The parsed GGUF behind a Model opened by openGgufModel (typed key/values, tensor infos);
// nullptr for models of other formats. Valid as long as the Model lives.
const GgufFile* ggufOf(const Model& m);

}  // namespace qz

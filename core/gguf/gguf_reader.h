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
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "gguf/gguf_file.h"
#include "model/model.h"

namespace qz {

Result<std::shared_ptr<Model>> openGgufModel(const std::string& path);

// The parsed GGUF behind a Model opened by openGgufModel (typed key/values, tensor infos);
// nullptr for models of other formats. Valid as long as the Model lives.
const GgufFile* ggufOf(const Model& m);

}  // namespace qz

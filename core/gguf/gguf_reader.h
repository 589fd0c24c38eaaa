// GGUF v3 reader: opens a .gguf file as a Model (tensors as views into the mapped file, metadata
// key/values kept for display and for re-export). Implementation: gguf/gguf_reader.cpp.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "model/model.h"

namespace qz {

Result<std::shared_ptr<Model>> openGgufModel(const std::string& path);

}  // namespace qz

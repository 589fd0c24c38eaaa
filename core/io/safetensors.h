// safetensors reader (FORMATS.md F.1), through mmap, treating the file as hostile input.
//
// Layout: u64 LE header length N | N bytes of JSON header | data.
// Header: { "__metadata__": {str: str}?, name: {"dtype": D, "shape": [..], "data_offsets": [begin, end]} ... }
// Offsets are relative to the start of the data section.
// Checks: N bounded (<= 100 MB and inside the file), valid UTF-8 JSON object, known dtype, shape of
// non-negative ints with no overflow, end-begin == dtype size * numel, offsets inside the data,
// no two tensors overlap, and every data byte belongs to some tensor (no gap, nothing trailing).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/result.h"
#include "model/model.h"

namespace qz {

struct SafetensorsHeader {
    std::vector<TensorInfo> tensors;   // offset is absolute in the file, fileIndex left 0
    std::vector<MetaItem> metadata;    // "__metadata__" entries
    uint64_t dataStart = 0;
};

// Parses and validates the header of a mapped safetensors file. Error messages name the file.
Result<SafetensorsHeader> parseSafetensors(const MappedFile& file);

// Opens a single .safetensors file as a Model (if a config.json lies beside it, it is used for the
// architecture summary).
Result<std::shared_ptr<Model>> openSafetensorsModel(const std::string& path);

}  // namespace qz

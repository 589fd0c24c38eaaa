// safetensors reader (README.md F.1), through mmap, treating the file as hostile input.
//
// Layout: u64 LE header length N | N bytes of JSON header | data.
// Header: { "__metadata__": {str: str}?, name: {"dtype": D, "shape": [..], "data_offsets": [begin, end]} ...
// } Offsets are relative to the start of the data section, end exclusive. Checks: N bounded (<= 100,000,000
// bytes and inside the file), header starts with '{' and is a valid UTF-8 JSON object (trailing spaces
// allowed), no duplicate names, every entry an object with a known dtype string, a shape of non-negative
// integers whose product does not overflow, and two integer data_offsets with end - begin == dtype size *
// numel; offsets inside the data section, no two tensors overlap, and every data byte belongs to exactly one
// tensor (no gap, nothing trailing). Tensors come out sorted by data offset (ties by name): JSON object order
// is not meaningful. The header is read with a streaming (SAX) parser: memory stays proportional to the
// tensor count, and a shape may have at most 1024 dimensions; entry fields other than
// dtype/shape/data_offsets are ignored. Error messages start with the file name, e.g.
//   "model.safetensors: tensor 'x' data_offsets [10, 20) overlap tensor 'y' [0, 16)".
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/mapped_file.h"
#include "common/result.h"
#include "model/model.h"

namespace qz {

struct SafetensorsHeader {
    std::vector<TensorInfo> tensors; // offset is absolute in the file, fileIndex left 0
    std::vector<MetaItem> metadata;  // "__metadata__" entries
    uint64_t dataStart = 0;
};

// Largest header accepted (the reference implementation's limit).
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

// Parses and validates the header of a mapped safetensors file. Error messages name the file.
Result<SafetensorsHeader> parseSafetensors(const MappedFile& file);

// Same checks on bytes in memory; `fileName` is only used in messages.
Result<SafetensorsHeader> parseSafetensorsBytes(const uint8_t* data, uint64_t size,
                                                const std::string& fileName);

// Parses JSON text, rejecting duplicate keys in any object (which nlohmann would silently collapse).
// Errors read "<fileName>: not valid JSON (...)" or "<fileName>: duplicate key 'x'".
Result<nlohmann::json> parseJsonNoDuplicates(std::string_view text, const std::string& fileName);

// Opens a single .safetensors file as a Model (if a config.json lies beside it, it is used for the
// architecture summary). The file's "__metadata__" entries are appended to Model::metadata with keys
// prefixed "safetensors." (e.g. "safetensors.format" = "pt"). A path to a "*.safetensors.index.json"
// opens the folder it lies in (openHfFolder).
Result<std::shared_ptr<Model>> openSafetensorsModel(const std::string& path);

} // namespace qz

// Small file helpers shared by the exporters and the report writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/result.h"

namespace qz {

// Writes text to path atomically: a hidden temporary name beside it, then rename (a reader never sees a
// half-written file; a failure leaves no temporary file).
Status writeFileAtomic(const std::string& path, const std::string& text);

// Reads a whole file of at most maxBytes (larger files are an error naming the file).
Result<std::string> readSmallFile(const std::string& path, size_t maxBytes);

// 64-bit FNV-1a of a string (fingerprints of resume states; not cryptographic).
uint64_t fnv1a(const std::string& s);

}  // namespace qz

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

// A destination folder written through a hidden partial folder beside it, ".<name>.<kind>-partial", that is
// renamed onto the destination when complete (the GPTQ and EXL2 exporters). Checks that the destination is
// absent or empty and that its parent exists; reuses an existing partial folder when `resume` is set and
// its state file ("<kind>-state.json") holds `fingerprint`, else recreates it with that state.
struct PartialFolder {
    std::string outDir;     // the destination, without trailing slashes
    std::string dir;        // the partial folder
    std::string stateFile;  // dir/<kind>-state.json
    bool reused = false;
};
Result<PartialFolder> openPartialFolder(const std::string& outputDir, const std::string& kind,
                                        const std::string& fingerprint, bool resume);

// 64-bit FNV-1a of a string (fingerprints of resume states; not cryptographic).
uint64_t fnv1a(const std::string& s);

}  // namespace qz

// Small file helpers shared by the exporters and the report writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/safe_file.h"  // writeFileAtomic

namespace qz {


// Reads a whole regular file of at most maxBytes: FIFOs, devices and folders are refused without blocking
// (opened O_NONBLOCK, checked with fstat), a file that grows past the limit while read is refused, and
// `cancelled` (if set) is polled between 1 MiB pieces. Errors name the file and the errno reason.
Result<std::string> readRegularFile(const std::string& path, uint64_t maxBytes,
                                    const std::function<bool()>& cancelled = {});

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
    // Held for the whole export: a second export to the same destination is refused instead of removing
    // or mixing this one's files. The lock file is ".<name>.<kind>-partial.qzlock" beside the folder.
    WriterLock lock;
};
Result<PartialFolder> openPartialFolder(const std::string& outputDir, const std::string& kind,
                                        const std::string& fingerprint, bool resume);

// Resolves the file `name` of a model folder for reading or copying. Symlinks are followed only when the
// target lies inside the folder, or, for a Hugging Face hub snapshot (".../snapshots/<rev>/", whose files
// link to "../../blobs/<hash>"), inside that repository's blobs folder. Returns the canonical path, or an
// error naming the file and where it points; a missing file is an error with `missing` set.
struct ModelFilePath {
    std::string path;      // canonical
    bool missing = false;  // the name does not exist in the folder (not an error for optional files)
};
Result<ModelFilePath> resolveModelFile(const std::string& folder, const std::string& name);

// Copies the side files (tokenizer, generation config, ...) in `names` that exist in `srcFolder` into
// `dstFolder` (each through writeFileAtomic), following symlinks only as resolveModelFile allows; appends
// the names copied to `copied`. Errors name the file and the reason.
Status copyModelSideFiles(const std::string& srcFolder, const std::string& dstFolder,
                          const std::vector<std::string>& names, std::vector<std::string>& copied);

// Nesting depth limit for JSON from model folders and user files: nlohmann::json's dump and comparison
// recurse, so a config.json of ~100k nested '[' in an ignored field would overflow the stack.
constexpr int kMaxJsonDepth = 512;
// Refuses JSON text nested deeper than maxDepth (arrays and objects; strings are skipped with their
// escapes). A linear scan, run before any parse; the error names the file.
Status checkJsonDepth(std::string_view text, const std::string& fileName, int maxDepth = kMaxJsonDepth);

// An untrusted string (metadata, tensor names, file names from a model) made safe to print on a terminal or
// in a log / label: C0 controls (ESC, BEL, ...), DEL and C1 controls (U+0080..U+009F) become \xNN /
// \u00NN escapes, newline and tab \n and \t; other UTF-8 text is kept as is.
std::string printableText(std::string_view s);

// 64-bit FNV-1a of a string (fingerprints of resume states; not cryptographic).
uint64_t fnv1a(const std::string& s);

}  // namespace qz

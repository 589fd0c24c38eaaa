// Safe output files: every writer of the engine (GGUF, safetensors, GPTQ / EXL2 folders, reports, KLD
// base, imatrix, small JSON files) goes through OutputFile.
//
//  * The destination is locked against a second writer in this or another process (flock on a hidden
//    ".<name>.qzlock" beside it); a second writer is refused with a message naming the file.
//  * Bytes go to a temporary file with a unique name in the destination folder, created with
//    O_CREAT|O_EXCL|O_NOFOLLOW (a planted symlink or an existing file is never followed or truncated),
//    mode 0644 filtered by the umask.
//  * commit(): flush, fsync, rename onto the destination, fsync the folder. Until then the destination is
//    untouched; abort() or the destructor removes the temporary file.
//  * The temporary and lock files are listed in a fixed-size registry that a signal handler can empty with
//    unlinkRegisteredTempFiles() (async-signal-safe), so a second Ctrl-C / SIGTERM still cleans up.
//  * Every error names the destination and the errno reason.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace qz {

class OutputFile {
  public:
    OutputFile() = default;
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    Status open(const std::string& path);
    // Buffered; large pieces go straight to the file.
    Status write(const void* data, size_t n);
    // Flushes, fsyncs and closes the temporary file (the destination is not touched yet).
    Status close();
    // close() if still open, then renames onto the destination and fsyncs the folder.
    Status commit();
    void abort();

    bool isOpen() const { return m_fd >= 0; }
    uint64_t bytesWritten() const { return m_written; }
    const std::string& path() const { return m_path; }
    const std::string& tempPath() const { return m_tmp; }

  private:
    Status fail(const std::string& what, int err);
    Status flush();
    void releaseLock();

    std::string m_path, m_tmp, m_lockPath;
    int m_fd = -1, m_lockFd = -1;
    int m_tmpSlot = -1, m_lockSlot = -1;
    uint64_t m_written = 0;
    std::vector<unsigned char> m_buf;
};

// A writer's exclusive lock on `lockPath` (flock on that file, created if needed, O_NOFOLLOW), for outputs
// that are not one file (the GPTQ / EXL2 partial folders): held while the returned handle lives, then the
// lock file is removed. A second writer is refused with an error naming `what`.
using WriterLock = std::shared_ptr<void>;
Result<WriterLock> acquireWriterLock(const std::string& lockPath, const std::string& what);

// Writes text to path through an OutputFile.
Status writeFileAtomic(const std::string& path, const std::string& text);

// Temporary-file registry for signal handlers. register returns a slot (or -1 when full: that file is then
// only removed by its owner).
int registerTempFile(const std::string& path);
void unregisterTempFile(int slot);
// Unlinks every registered file; async-signal-safe (unlink only, no allocation, no locks).
void unlinkRegisteredTempFiles() noexcept;

// Refuses to write `outPath` when it is (or is a hard link to, or a symlink to) one of `inputs`: same
// st_dev/st_ino. A missing outPath is fine. `inputs` may name folders: every file directly inside them
// counts (shards and side files of a model folder).
Status refuseOverwritingInputs(const std::string& outPath, const std::vector<std::string>& inputs);

} // namespace qz

// Read-only memory map of a whole file. Tensors are read through this so that a 70B model costs
// address space, not RAM: pages are read on demand and dropped by the kernel under pressure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace qz {

// Opens `path` read-only for the readers: without blocking (a FIFO never waits for a writer) and only when
// it is a regular file. Returns the descriptor (the caller closes it) and the file's size, or an error
// naming the file and the errno reason.
struct OpenedFile {
    int fd = -1;
    uint64_t size = 0;
};
Result<OpenedFile> openRegularFile(const std::string& path);

class MappedFile {
public:
    static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
    // The same interface over bytes already in memory (small files parsed from a buffer, tests);
    // `name` stands for the path in messages.
    static std::shared_ptr<MappedFile> fromBuffer(std::vector<uint8_t> bytes, const std::string& name);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::string& path() const { return m_path; }
    uint64_t size() const { return m_size; }
    const uint8_t* data() const { return m_data; }
    // Bytes [offset, offset+len) — the caller has validated the range against size().
    std::span<const uint8_t> bytes(uint64_t offset, uint64_t len) const { return {m_data + offset, len}; }
    // Hint the kernel that a range will be read sequentially soon / is no longer needed.
    void adviseWillNeed(uint64_t offset, uint64_t len) const;
    void adviseDontNeed(uint64_t offset, uint64_t len) const;

private:
    MappedFile() = default;
    std::string m_path;
    const uint8_t* m_data = nullptr;
    uint64_t m_size = 0;
    std::vector<uint8_t> m_buffer;  // fromBuffer: the bytes (m_data points into it; nothing mapped)
    bool m_mapped = false;
};

}  // namespace qz

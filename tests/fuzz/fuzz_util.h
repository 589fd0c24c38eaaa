// Shared pieces of the libFuzzer harnesses (tests/fuzz/README.md).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace qzfuzz {

// An anonymous in-memory file (memfd) reachable by path, for the readers that only take a path.
// One per harness process; each input replaces its content.
class MemFile {
  public:
    explicit MemFile(const char* name) {
        m_fd = memfd_create(name, 0);
        if (m_fd < 0) {
            std::perror("memfd_create");
            std::abort();
        }
        m_path = "/proc/self/fd/" + std::to_string(m_fd);
    }
    const std::string& write(const uint8_t* data, size_t size) {
        if (ftruncate(m_fd, 0) != 0) std::abort();
        size_t done = 0;
        while (done < size) {
            const ssize_t n = pwrite(m_fd, data + done, size - done, static_cast<off_t>(done));
            if (n <= 0) std::abort();
            done += static_cast<size_t>(n);
        }
        return m_path;
    }
    const std::string& path() const { return m_path; }

  private:
    int m_fd = -1;
    std::string m_path;
};

// Splits an input into at most `n` parts at NUL bytes (none of the JSON files fuzzed contain one);
// missing parts are empty.
inline std::vector<std::string> splitParts(const uint8_t* data, size_t size, size_t n) {
    std::vector<std::string> parts(n);
    size_t k = 0;
    for (size_t i = 0; i < size; ++i) {
        if (data[i] == 0 && k + 1 < n) {
            ++k;
            continue;
        }
        parts[k].push_back(static_cast<char>(data[i]));
    }
    return parts;
}

// The test data folder (compiled in; QZ_FUZZ_DATA overrides it, e.g. for a copied build).
inline std::string testData() {
    if (const char* d = std::getenv("QZ_FUZZ_DATA")) return d;
    return QZ_TEST_DATA;
}

} // namespace qzfuzz

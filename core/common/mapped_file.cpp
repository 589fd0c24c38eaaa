#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qz {

Result<OpenedFile> openRegularFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        return makeError(path + ": cannot open: " + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        return makeError(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return makeError(path + ": not a regular file");
    }
    return OpenedFile{fd, static_cast<uint64_t>(st.st_size)};
}

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
    auto opened = openRegularFile(path);
    if (!opened) return opened.error();
    const int fd = opened->fd;
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->m_path = path;
    f->m_size = opened->size;
    if (f->m_size > 0) {
        void* p = ::mmap(nullptr, f->m_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            return makeError(path + ": cannot map: " + std::strerror(err));
        }
        f->m_data = static_cast<const uint8_t*>(p);
        f->m_mapped = true;
    }
    ::close(fd);
    return f;
}

std::shared_ptr<MappedFile> MappedFile::fromBuffer(std::vector<uint8_t> bytes, const std::string& name) {
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->m_path = name;
    f->m_buffer = std::move(bytes);
    f->m_size = f->m_buffer.size();
    f->m_data = f->m_buffer.empty() ? nullptr : f->m_buffer.data();
    return f;
}

MappedFile::~MappedFile() {
    if (m_mapped && m_data) ::munmap(const_cast<uint8_t*>(m_data), m_size);
}

namespace {
void advise(bool mapped, const uint8_t* base, uint64_t size, uint64_t offset, uint64_t len, int how) {
    if (!mapped || !base || offset >= size) return;
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t start = offset / page * page;
    const uint64_t end = std::min<uint64_t>(size, offset + len);
    ::madvise(const_cast<uint8_t*>(base) + start, end - start, how);
}
}  // namespace

void MappedFile::adviseWillNeed(uint64_t offset, uint64_t len) const {
    advise(m_mapped, m_data, m_size, offset, len, MADV_WILLNEED);
}
void MappedFile::adviseDontNeed(uint64_t offset, uint64_t len) const {
    advise(m_mapped, m_data, m_size, offset, len, MADV_DONTNEED);
}

}  // namespace qz

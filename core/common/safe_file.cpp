#include "common/safe_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace qz {

namespace {

namespace fs = std::filesystem;

// ---- registry (fixed storage: the signal handler only reads it)
constexpr int kSlots = 128;
constexpr size_t kMaxPath = 4096;
struct Slot {
    std::atomic<int> state{0}; // 0 free, 1 being filled, 2 live
    char path[kMaxPath];
};
Slot g_slots[kSlots];

constexpr size_t kBufferBytes = 1 << 20;

std::string errText(int err) {
    return std::strerror(err);
}

std::string folderOf(const std::string& path) {
    const fs::path p(path);
    return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}

std::string hiddenSibling(const std::string& path, const std::string& suffix) {
    const fs::path p(path);
    std::string name(1, '.');
    name.append(p.filename().string()).append(suffix);
    return (p.has_parent_path() ? p.parent_path() / name : fs::path(name)).string();
}

std::string randomSuffix() {
    static std::atomic<uint64_t> counter{0};
    uint64_t r = 0;
    if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r))
        r = (static_cast<uint64_t>(::getpid()) << 32) ^ counter.fetch_add(1) ^
            static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    static const char kAlpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::string s;
    for (int i = 0; i < 10; ++i) {
        s += kAlpha[r % 36];
        r /= 36;
    }
    return s;
}

void fsyncFolder(const std::string& dir) {
    const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return;
    (void)::fsync(d); // some file systems refuse (EINVAL): the rename itself stands
    ::close(d);
}

} // namespace

int registerTempFile(const std::string& path) {
    if (path.size() + 1 > kMaxPath) return -1;
    for (int i = 0; i < kSlots; ++i) {
        int expected = 0;
        if (g_slots[i].state.compare_exchange_strong(expected, 1)) {
            std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
            g_slots[i].state.store(2);
            return i;
        }
    }
    return -1;
}

void unregisterTempFile(int slot) {
    if (slot >= 0 && slot < kSlots) g_slots[slot].state.store(0);
}

void unlinkRegisteredTempFiles() noexcept {
    for (auto& s : g_slots)
        if (s.state.load() == 2) ::unlink(s.path);
}

OutputFile::~OutputFile() {
    abort();
}

Status OutputFile::fail(const std::string& what, int err) {
    abort();
    return makeError(m_path + ": " + what + (err ? ": " + errText(err) : std::string()));
}

void OutputFile::releaseLock() {
    if (m_lockFd >= 0) {
        // Unlinked while still held: a writer waiting on this inode re-checks the name and retries.
        ::unlink(m_lockPath.c_str());
        ::close(m_lockFd);
        m_lockFd = -1;
    }
    unregisterTempFile(m_lockSlot);
    m_lockSlot = -1;
}

Status OutputFile::open(const std::string& path) {
    if (m_fd >= 0 || m_lockFd >= 0) return makeError(path + ": output file already open");
    m_path = path;
    m_written = 0;
    if (path.empty()) return makeError("no output file given");
    if (fs::path(path).filename().empty()) return makeError(path + ": not a file path");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return makeError(path + ": is a folder");

    // One output, one writer.
    m_lockPath = hiddenSibling(path, ".qzlock");
    for (int attempt = 0;; ++attempt) {
        const int fd = ::open(m_lockPath.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            const int err = errno;
            return makeError(path + ": cannot create the lock file " + m_lockPath + ": " + errText(err));
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            ::close(fd);
            if (err == EWOULDBLOCK)
                return makeError(path + ": another export is writing this file (locked by " + m_lockPath +
                                 ")");
            return makeError(path + ": cannot lock " + m_lockPath + ": " + errText(err));
        }
        struct stat a {
        }, b{};
        if (::fstat(fd, &a) == 0 && ::lstat(m_lockPath.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            m_lockFd = fd;
            break;
        }
        ::close(fd); // the previous holder removed it meanwhile
        if (attempt > 100) return makeError(path + ": cannot lock " + m_lockPath);
    }
    m_lockSlot = registerTempFile(m_lockPath);

    for (int attempt = 0; attempt < 100; ++attempt) {
        std::string suffix(1, '.'); // appended piecewise: GCC 12 warns falsely (-Wrestrict) on "." + string&&
        suffix.append(randomSuffix()).append(".qztmp");
        m_tmp = hiddenSibling(path, suffix);
        // Registered before it exists: a second signal between the open and a later registration would
        // leave the file behind. If the (random) name is taken after all (EEXIST: not ours), it is
        // unregistered at once; only a second signal in that instant could remove that file.
        m_tmpSlot = registerTempFile(m_tmp);
        m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (m_fd >= 0) break;
        const int openErr = errno;
        unregisterTempFile(m_tmpSlot);
        m_tmpSlot = -1;
        if (openErr != EEXIST) {
            const int err = openErr;
            m_tmp.clear();
            releaseLock();
            return makeError(path + ": cannot create a temporary file in " + folderOf(path) + ": " +
                             errText(err));
        }
    }
    if (m_fd < 0) {
        m_tmp.clear();
        releaseLock();
        return makeError(path + ": cannot create a temporary file in " + folderOf(path));
    }
    m_buf.reserve(kBufferBytes);
    return okStatus();
}

Status OutputFile::flush() {
    const unsigned char* p = m_buf.data();
    size_t n = m_buf.size();
    while (n > 0) {
        const ssize_t w = ::write(m_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return fail("write failed", errno);
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    m_buf.clear();
    return okStatus();
}

Status OutputFile::write(const void* data, size_t n) {
    if (m_fd < 0) return makeError(m_path + ": output file is not open");
    const auto* p = static_cast<const unsigned char*>(data);
    m_written += n;
    if (m_buf.size() + n <= kBufferBytes) {
        m_buf.insert(m_buf.end(), p, p + n);
        return m_buf.size() == kBufferBytes ? flush() : okStatus();
    }
    if (auto s = flush(); !s) return s;
    if (n < kBufferBytes) {
        m_buf.insert(m_buf.end(), p, p + n);
        return okStatus();
    }
    while (n > 0) {
        const ssize_t w = ::write(m_fd, p, std::min<size_t>(n, size_t{1} << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            return fail("write failed", errno);
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return okStatus();
}

Status OutputFile::close() {
    if (m_fd < 0) return makeError(m_path + ": output file is not open");
    if (auto s = flush(); !s) return s;
    if (::fsync(m_fd) != 0 && errno != EINVAL && errno != EROFS) return fail("cannot flush to disk", errno);
    const int fd = m_fd;
    m_fd = -1;
    if (::close(fd) != 0) return fail("cannot close the temporary file " + m_tmp, errno);
    return okStatus();
}

Status OutputFile::commit() {
    if (m_fd >= 0)
        if (auto s = close(); !s) return s;
    if (m_tmp.empty()) return makeError(m_path + ": output file is not open");
    if (::rename(m_tmp.c_str(), m_path.c_str()) != 0)
        return fail("cannot rename the temporary file " + m_tmp + " onto it", errno);
    unregisterTempFile(m_tmpSlot);
    m_tmpSlot = -1;
    m_tmp.clear();
    fsyncFolder(folderOf(m_path));
    releaseLock();
    m_buf = {};
    return okStatus();
}

void OutputFile::abort() {
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
    }
    if (!m_tmp.empty()) {
        ::unlink(m_tmp.c_str());
        m_tmp.clear();
    }
    unregisterTempFile(m_tmpSlot);
    m_tmpSlot = -1;
    releaseLock();
    m_buf = {};
}

Result<WriterLock> acquireWriterLock(const std::string& lockPath, const std::string& what) {
    struct Held {
        std::string path;
        int fd = -1, slot = -1;
        ~Held() {
            ::unlink(path.c_str()); // while still held: a waiting writer re-checks the name (below)
            ::close(fd);
            unregisterTempFile(slot);
        }
    };
    for (int attempt = 0; attempt <= 100; ++attempt) {
        const int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            const int err = errno;
            return makeError(what + ": cannot create the lock file " + lockPath + ": " + errText(err));
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            ::close(fd);
            if (err == EWOULDBLOCK)
                return makeError(what + ": another export is writing it (locked by " + lockPath + ")");
            return makeError(what + ": cannot lock " + lockPath + ": " + errText(err));
        }
        struct stat a {
        }, b{};
        if (::fstat(fd, &a) == 0 && ::lstat(lockPath.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            auto h = std::make_shared<Held>();
            h->path = lockPath;
            h->fd = fd;
            h->slot = registerTempFile(lockPath);
            return WriterLock(h);
        }
        ::close(fd); // the previous holder removed it meanwhile: take the new one
    }
    return makeError(what + ": cannot lock " + lockPath);
}

Status writeFileAtomic(const std::string& path, const std::string& text) {
    OutputFile f;
    if (auto s = f.open(path); !s) return s;
    if (auto s = f.write(text.data(), text.size()); !s) return s;
    return f.commit();
}

Status refuseOverwritingInputs(const std::string& outPath, const std::vector<std::string>& inputs) {
    struct stat out {};
    if (::stat(outPath.c_str(), &out) != 0) return okStatus(); // absent (or unreachable: the writer says)
    auto same = [&](const struct stat& s) { return s.st_dev == out.st_dev && s.st_ino == out.st_ino; };
    for (const auto& in : inputs) {
        struct stat st {};
        if (in.empty() || ::stat(in.c_str(), &st) != 0) continue;
        if (same(st)) return makeError(outPath + ": is the input file " + in + "; choose another output");
        if (!S_ISDIR(st.st_mode)) continue;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(in, ec)) {
            struct stat es {};
            if (::stat(e.path().c_str(), &es) == 0 && !S_ISDIR(es.st_mode) && same(es))
                return makeError(outPath + ": is (or links to) the input model's file " + e.path().string() +
                                 "; choose another output");
        }
    }
    return okStatus();
}

} // namespace qz

#include "common/file_util.h"
#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>

namespace qz {

Result<std::string> readRegularFile(const std::string& path, uint64_t maxBytes,
                                    const std::function<bool()>& cancelled) {
    auto opened = openRegularFile(path);
    if (!opened) return opened.error();
    const int fd = opened->fd;
    const uint64_t size = opened->size;
    if (size > maxBytes) {
        ::close(fd);
        return makeError(path + ": " + std::to_string(size) + " bytes is too large (limit " +
                         std::to_string(maxBytes) + ")");
    }
    std::string s;
    s.reserve(static_cast<size_t>(size));
    constexpr size_t kPiece = 1 << 20;
    std::string piece(kPiece, '\0');
    for (;;) {
        if (cancelled && cancelled()) {
            ::close(fd);
            return cancelledError();
        }
        const ssize_t n = ::read(fd, piece.data(), kPiece);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return makeError(path + ": read failed: " + std::strerror(err));
        }
        if (n == 0) break;
        if (s.size() + static_cast<size_t>(n) > maxBytes) {  // grew while being read
            ::close(fd);
            return makeError(path + ": larger than the limit of " + std::to_string(maxBytes) + " bytes");
        }
        s.append(piece.data(), static_cast<size_t>(n));
    }
    ::close(fd);
    return s;
}

Result<std::string> readSmallFile(const std::string& path, size_t maxBytes) {
    return readRegularFile(path, maxBytes);
}

Result<PartialFolder> openPartialFolder(const std::string& outputDir, const std::string& kind,
                                        const std::string& fingerprint, bool resume) {
    namespace fs = std::filesystem;
    PartialFolder pf;
    pf.outDir = outputDir;
    while (pf.outDir.size() > 1 && pf.outDir.back() == '/') pf.outDir.pop_back();
    if (pf.outDir.empty()) return makeError("no output folder given");
    std::error_code ec;
    if (fs::exists(pf.outDir, ec) && !(fs::is_directory(pf.outDir, ec) && fs::is_empty(pf.outDir, ec)))
        return makeError(pf.outDir + " already exists (choose a new folder or remove it)");
    const fs::path out(pf.outDir);
    const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, ec)) return makeError("folder " + parent.string() + " does not exist");
    std::string name = ".";  // built by appending: GCC 12 warns falsely (-Wrestrict) on "." + string&&
    name += out.filename().string();
    name += '.';
    name += kind;
    name += "-partial";
    const fs::path dir = parent / name;
    pf.dir = dir.string();
    auto lock = acquireWriterLock(pf.dir + ".qzlock", pf.outDir);
    if (!lock) return lock.error();
    pf.lock = *lock;
    pf.stateFile = (dir / (kind + "-state.json")).string();
    // A symlink planted under the partial folder's fixed name is never followed: it is not reused, it is
    // removed (not its target) and a real folder takes its place.
    if (resume && fs::is_directory(fs::symlink_status(dir, ec))) {
        auto st = readSmallFile(pf.stateFile, 1 << 20);
        pf.reused = st && *st == fingerprint;
    }
    if (!pf.reused) {
        std::error_code rm;
        fs::remove_all(dir, rm);
        const bool made = fs::create_directory(dir, ec);
        if (ec || !made)
            return makeError(pf.outDir + ": cannot create the temporary folder " + dir.string() + ": " +
                             (ec ? ec.message() : rm ? rm.message() : std::string("it exists and cannot be removed")));
        if (auto s = writeFileAtomic(pf.stateFile, fingerprint); !s) return s.error();
    }
    return pf;
}

Result<ModelFilePath> resolveModelFile(const std::string& folder, const std::string& name) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path root = fs::canonical(folder, ec);
    if (ec) return makeError(folder + ": cannot resolve: " + ec.message());
    const fs::path joined = root / name;
    ModelFilePath out;
    if (!fs::exists(fs::symlink_status(joined, ec))) {
        out.missing = true;
        return out;
    }
    const fs::path real = fs::canonical(joined, ec);
    if (ec) return makeError(joined.string() + ": cannot resolve: " + ec.message());
    auto inside = [&](const fs::path& base) {
        const fs::path back = real.lexically_relative(base);
        return !back.empty() && *back.begin() != ".." && back != ".";
    };
    const bool hubSnapshot = root.parent_path().filename() == "snapshots";
    if (!inside(root) && !(hubSnapshot && inside(root.parent_path().parent_path() / "blobs")))
        return makeError(joined.string() + " resolves outside the model folder (symlink to " + real.string() +
                         "); refusing to read it");
    out.path = real.string();
    return out;
}

Status copyModelSideFiles(const std::string& srcFolder, const std::string& dstFolder,
                          const std::vector<std::string>& names, std::vector<std::string>& copied) {
    namespace fs = std::filesystem;
    for (const auto& name : names) {
        auto r = resolveModelFile(srcFolder, name);
        if (!r) return r.error();
        if (r->missing) continue;
        std::error_code ec;
        if (!fs::is_regular_file(r->path, ec)) continue;
        auto text = readRegularFile(r->path, uint64_t{1} << 30);
        if (!text) return text.error();
        if (auto s = writeFileAtomic((fs::path(dstFolder) / name).string(), *text); !s) return s;
        copied.push_back(name);
    }
    return okStatus();
}

Status checkJsonDepth(std::string_view text, const std::string& fileName, int maxDepth) {
    int depth = 0;
    bool inString = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (inString) {
            if (c == '\\')
                ++i;  // the escaped character
            else if (c == '"')
                inString = false;
            continue;
        }
        if (c == '"') {
            inString = true;
        } else if (c == '[' || c == '{') {
            if (++depth > maxDepth)
                return makeError(fileName + ": JSON nested deeper than " + std::to_string(maxDepth) +
                                 " levels (at byte " + std::to_string(i) + ")");
        } else if (c == ']' || c == '}') {
            if (depth > 0) --depth;  // unbalanced text is the parser's to report
        }
    }
    return okStatus();
}

std::string printableText(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        const auto u = static_cast<unsigned char>(s[i]);
        if (u == '\n') {
            out += "\\n";
        } else if (u == '\t') {
            out += "\\t";
        } else if (u < 0x20 || u == 0x7f) {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else if (u == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(s[i + 1]) < 0xa0) {
            const auto v = static_cast<unsigned char>(s[++i]);
            out += "\\u00";
            out += hex[v >> 4];
            out += hex[v & 15];
        } else {
            out += static_cast<char>(u);
        }
    }
    return out;
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

}  // namespace qz

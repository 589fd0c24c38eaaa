#include "common/file_util.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace qz {

Status writeFileAtomic(const std::string& path, const std::string& text) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path tmp =
        target.parent_path() / (".~" + target.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) return makeError(path + ": cannot create " + tmp.string());
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        out.flush();
        if (!out) {
            std::error_code ec;
            fs::remove(tmp, ec);
            return makeError(path + ": write failed");
        }
    }
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return makeError(path + ": cannot rename into place: " + ec.message());
    }
    return okStatus();
}

Result<std::string> readSmallFile(const std::string& path, size_t maxBytes) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return makeError("cannot open " + path);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(f.tellg());
    if (size < 0 || static_cast<uint64_t>(size) > maxBytes) return makeError(path + " is too large");
    f.seekg(0);
    std::string s(static_cast<size_t>(size), '\0');
    if (size > 0 && !f.read(s.data(), size)) return makeError("cannot read " + path);
    return s;
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
    pf.stateFile = (dir / (kind + "-state.json")).string();
    if (resume && fs::is_directory(dir, ec)) {
        auto st = readSmallFile(pf.stateFile, 1 << 20);
        pf.reused = st && *st == fingerprint;
    }
    if (!pf.reused) {
        fs::remove_all(dir, ec);
        if (!fs::create_directory(dir, ec) || ec) return makeError("cannot create " + dir.string());
        if (auto s = writeFileAtomic(pf.stateFile, fingerprint); !s) return s.error();
    }
    return pf;
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

}  // namespace qz

#include "model/model.h"
#include "model/tensor_names.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "gguf/gguf_reader.h"
#include "io/hf_folder.h"
#include "io/safetensors.h"
#include "model/convert.h"

namespace qz {

uint64_t TensorInfo::numel() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

int64_t TensorInfo::rows() const {
    int64_t r = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
    return r;
}

std::string TensorInfo::shapeString() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

const TensorInfo* Model::find(std::string_view tensorName) const {
    for (const auto& t : tensors)
        if (t.name == tensorName) return &t;
    return nullptr;
}

std::span<const uint8_t> Model::rawBytes(const TensorInfo& t) const {
    return files.at(t.fileIndex)->bytes(t.offset, t.nbytes);
}

uint64_t Model::totalParameters() const {
    uint64_t n = 0;
    for (const auto& t : tensors) n += t.numel();
    return n;
}

uint64_t Model::totalBytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors) n += t.nbytes;
    return n;
}

Result<std::shared_ptr<Model>> openModel(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) return openHfFolder(path);
    if (!fs::exists(path, ec)) return makeError(path + ": no such file or folder");
    char magic[4] = {};
    {
        // O_NONBLOCK + fstat: a FIFO or device given as the model is refused instead of blocking the open.
        const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            const int err = errno;
            return makeError(path + ": cannot open: " + std::strerror(err));
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            return makeError(path + ": not a regular file");
        }
        if (::read(fd, magic, 4) < 0) magic[0] = 0;
        ::close(fd);
    }
    if (std::memcmp(magic, "GGUF", 4) == 0) return openGgufModel(path);
    return openSafetensorsModel(path);
}

Status readTensorF32(const Model& m, const TensorInfo& t, std::span<float> out) {
    if (out.size() != t.numel()) return makeError(t.name + ": output buffer has the wrong size");
    if (!canConvertToF32(t.dtype))
        return makeError(m.path + ": tensor " + t.name + " has dtype " + std::string(dtypeName(t.dtype)) +
                         ", which QuantZoo cannot convert to F32 yet");
    const auto bytes = m.rawBytes(t);
    return convertToF32(t.dtype, bytes.data(), t.numel(), out.data());
}

Result<std::vector<float>> readTensorF32(const Model& m, const TensorInfo& t) {
    std::vector<float> v(t.numel());
    auto st = readTensorF32(m, t, v);
    if (!st) return st.error();
    return v;
}

namespace {
// The number after the first "<prefix>.N." in name, or -1 (also for numbers too long for an int: a tensor
// name is untrusted text).
int indexAfter(std::string_view name, const std::regex& re) {
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_search(name.begin(), name.end(), m, re)) return -1;
    const std::string digits = m[1].str();
    int v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    return (ec == std::errc() && end == digits.data() + digits.size()) ? v : -1;
}
}  // namespace

int layerIndexOf(std::string_view name) {
    static const std::regex re(R"((?:^|\.)(?:layers|h|blk|block|blocks|layer)\.(\d+)\.)");
    return indexAfter(name, re);
}

int expertIndexOf(std::string_view name) {
    static const std::regex re(R"((?:^|\.)experts\.(\d+)\.)");
    return indexAfter(name, re);
}

}  // namespace qz

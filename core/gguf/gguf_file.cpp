// GGUF parser (README.md A.1). Every read goes through Cursor, which checks the remaining bytes
// first; counts are bounded by the bytes left before anything is reserved.
#include "gguf/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace qz {

namespace {

constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;          // key length, 1-byte key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 4 + 8;  // name length, 1-byte name, n_dims, type, offset

// Memory the parser may commit for the header (key/values, strings, tensor infos). Counts are bounded by
// the file size, but an element costs more in memory than in the file (an empty string: 8 bytes in the
// file, 32 in a std::string): a 200 MB file of empty strings would otherwise take about 1 GB. Real
// headers (a 256k-token vocabulary with its merges) use a few tens of MB.
constexpr uint64_t kHeaderMemoryBudget = uint64_t{512} << 20;

uint64_t padTo(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

}  // namespace

class GgufParser {
public:
    GgufParser(const MappedFile& f) : m_path(f.path()), m_p(f.data()), m_size(f.size()) {}

    Result<std::shared_ptr<GgufFile>> run(std::shared_ptr<MappedFile> mf);

private:
    Error fail(const std::string& what) const { return makeError(m_path + ": " + what); }
    Error truncated(const std::string& what, uint64_t need) const {
        return fail("truncated GGUF file: " + what + " at byte " + std::to_string(m_pos) + " needs " +
                    std::to_string(need) + " bytes, only " + std::to_string(m_size - m_pos) + " remain");
    }
    uint64_t remaining() const { return m_size - m_pos; }

    // Charges `count` elements of `each` bytes to the header memory budget.
    std::optional<Error> charge(uint64_t count, uint64_t each, const std::string& what) {
        if (each != 0 && count > (kHeaderMemoryBudget - m_committed) / each)
            return fail(what + " would take more than " + std::to_string(kHeaderMemoryBudget >> 20) +
                        " MiB of memory (" + std::to_string(count) + " elements)");
        m_committed += count * each;
        return std::nullopt;
    }

    template <class T>
    bool read(T& v) {
        if (remaining() < sizeof(T)) return false;
        std::memcpy(&v, m_p + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return true;
    }

    // Reads a GGUF string; `what` names it in messages.
    std::optional<Error> readString(std::string& out, const std::string& what) {
        uint64_t len;
        if (!read(len)) return truncated(what + " length", 8);
        if (len > remaining())
            return fail(what + " at byte " + std::to_string(m_pos - 8) + " claims " + std::to_string(len) +
                        " bytes but only " + std::to_string(remaining()) + " remain in the file");
        if (len >= sizeof(std::string))  // beyond the inline buffer: a heap block
            if (auto e = charge(1, len + 1, what)) return e;
        out.assign(reinterpret_cast<const char*>(m_p + m_pos), len);
        m_pos += len;
        return std::nullopt;
    }

    std::optional<Error> readValue(GgufType t, GgufValue& v, const std::string& key);

    std::string m_path;
    const uint8_t* m_p;
    uint64_t m_size;
    uint64_t m_pos = 0;
    uint64_t m_committed = 0;  // bytes charged to kHeaderMemoryBudget
};

std::optional<Error> GgufParser::readValue(GgufType t, GgufValue& v, const std::string& key) {
    v.type = t;
    const std::string what = "value of key '" + key + "'";
    if (t == GgufType::String) return readString(v.str, what);
    if (t != GgufType::Array) {
        const size_t es = ggufScalarSize(t);
        if (remaining() < es) return truncated(what, es);
        std::memcpy(&v.bits, m_p + m_pos, es);
        m_pos += es;
        return std::nullopt;
    }
    uint32_t et;
    uint64_t n;
    if (!read(et)) return truncated("array element type of key '" + key + "'", 4);
    if (et >= kGgufTypeCount)
        return fail("key '" + key + "' is an array of unknown value type " + std::to_string(et));
    if (et == static_cast<uint32_t>(GgufType::Array))
        return fail("key '" + key + "' is an array of arrays, which GGUF readers reject");
    if (!read(n)) return truncated("array length of key '" + key + "'", 8);
    v.elemType = static_cast<GgufType>(et);
    v.count = n;
    if (v.elemType == GgufType::String) {
        if (n > remaining() / 8)
            return fail("key '" + key + "' claims " + std::to_string(n) + " strings but only " +
                        std::to_string(remaining()) + " bytes remain in the file");
        if (auto e = charge(n, sizeof(std::string), "key '" + key + "' array of strings")) return e;
        v.strings.resize(n);
        for (uint64_t i = 0; i < n; ++i)
            if (auto e = readString(v.strings[i], "string " + std::to_string(i) + " of key '" + key + "'")) return e;
        return std::nullopt;
    }
    const size_t es = ggufScalarSize(v.elemType);
    if (n > remaining() / es)
        return fail("key '" + key + "' claims " + std::to_string(n) + " elements of " +
                    std::string(ggufTypeName(v.elemType)) + " but only " + std::to_string(remaining()) +
                    " bytes remain in the file");
    if (auto e = charge(n, es, "key '" + key + "' array")) return e;
    v.data.assign(m_p + m_pos, m_p + m_pos + n * es);
    m_pos += n * es;
    return std::nullopt;
}

Result<std::shared_ptr<GgufFile>> GgufParser::run(std::shared_ptr<MappedFile> mf) {
    auto g = std::make_shared<GgufFile>();
    g->path = m_path;
    g->file = std::move(mf);

    // ---- header
    if (m_size < 4 || std::memcmp(m_p, "GGUF", 4) != 0) return fail("not a GGUF file (bad magic)");
    m_pos = 4;
    uint32_t version;
    if (!read(version)) return truncated("version", 4);
    if ((version & 0xFFFF) == 0)
        return fail("GGUF version " + std::to_string(version) + " looks byte-swapped (wrong endianness)");
    if (version == 1) return fail("GGUF version 1 is no longer supported");
    if (version < 2 || version > 3)
        return fail("unsupported GGUF version " + std::to_string(version) + " (2 and 3 are supported)");
    g->version = version;
    uint64_t nTensors, nKv;
    if (!read(nTensors)) return truncated("tensor count", 8);
    if (!read(nKv)) return truncated("key/value count", 8);
    if (nKv > remaining() / kMinKvBytes)
        return fail("header claims " + std::to_string(nKv) + " key/values, more than the file can hold");
    if (nTensors > remaining() / kMinTensorInfoBytes)
        return fail("header claims " + std::to_string(nTensors) + " tensors, more than the file can hold");

    // ---- key/values
    if (auto e = charge(nKv, sizeof(GgufKV) + 64, "the key/value table")) return *e;  // + index entry
    g->kvs.reserve(nKv);
    for (uint64_t i = 0; i < nKv; ++i) {
        GgufKV kv;
        if (auto e = readString(kv.key, "key " + std::to_string(i))) return *e;
        if (kv.key.empty()) return fail("key " + std::to_string(i) + " is empty");
        if (g->m_kvIndex.count(kv.key)) return fail("duplicate key '" + kv.key + "'");
        uint32_t t;
        if (!read(t)) return truncated("value type of key '" + kv.key + "'", 4);
        if (t >= kGgufTypeCount)
            return fail("key '" + kv.key + "' has unknown value type " + std::to_string(t));
        if (auto e = readValue(static_cast<GgufType>(t), kv.value, kv.key)) return *e;
        g->m_kvIndex.emplace(kv.key, g->kvs.size());
        g->kvs.push_back(std::move(kv));
    }
    if (const GgufValue* a = g->find("general.alignment")) {
        if (a->type != GgufType::U32)
            return fail("general.alignment must be UINT32, found " + std::string(ggufTypeName(a->type)));
        const auto al = static_cast<uint32_t>(a->bits);
        if (al == 0 || (al & (al - 1)) != 0)
            return fail("general.alignment " + std::to_string(al) + " is not a power of two");
        g->alignment = al;
    }

    // ---- tensor infos
    if (auto e = charge(nTensors, sizeof(GgufTensor) + 64, "the tensor table")) return *e;
    g->tensors.reserve(nTensors);
    for (uint64_t i = 0; i < nTensors; ++i) {
        GgufTensor t;
        if (auto e = readString(t.name, "name of tensor " + std::to_string(i))) return *e;
        if (t.name.size() > kGgufMaxNameBytes)
            return fail("tensor name '" + t.name.substr(0, 80) + "...' is " + std::to_string(t.name.size()) +
                        " bytes long (at most 63 allowed)");
        if (g->m_tensorIndex.count(t.name)) return fail("duplicate tensor name '" + t.name + "'");
        const std::string tn = "tensor '" + t.name + "'";
        uint32_t nDims;
        if (!read(nDims)) return truncated("dimension count of " + tn, 4);
        if (nDims > kGgufMaxDims)
            return fail(tn + " has " + std::to_string(nDims) + " dimensions (at most 4 allowed)");
        uint64_t numel = 1;
        for (uint32_t d = 0; d < nDims; ++d) {
            uint64_t ne;
            if (!read(ne)) return truncated("dimensions of " + tn, 8);
            if (ne > static_cast<uint64_t>(INT64_MAX))
                return fail(tn + " has a negative dimension " + std::to_string(static_cast<int64_t>(ne)));
            if (ne != 0 && numel > static_cast<uint64_t>(INT64_MAX) / ne)
                return fail(tn + " has too many elements (the product of its dimensions overflows)");
            numel *= ne;
            t.ne.push_back(static_cast<int64_t>(ne));
        }
        if (!read(t.ggmlType)) return truncated("type of " + tn, 4);
        const auto dt = dtypeFromGgmlId(t.ggmlType);
        if (!dt) return fail(tn + " has unknown ggml type " + std::to_string(t.ggmlType));
        t.dtype = *dt;
        const auto& tr = traits(*dt);
        const int64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
        if (ne0 % tr.blockSize != 0)
            return fail(tn + " of type " + std::string(tr.name) + " has ne[0] = " + std::to_string(ne0) +
                        ", not a multiple of the block size " + std::to_string(tr.blockSize));
        const auto nb = bytesFor(*dt, numel);
        if (!nb) return fail(tn + " is too large");
        t.numel = numel;
        t.nbytes = *nb;
        if (!read(t.offset)) return truncated("data offset of " + tn, 8);
        g->m_tensorIndex.emplace(t.name, g->tensors.size());
        g->tensors.push_back(std::move(t));
    }
    g->infosEnd = m_pos;

    // ---- data section
    g->dataOffset = padTo(m_pos, g->alignment);
    if (!g->tensors.empty() && g->dataOffset > m_size)
        return fail("truncated GGUF file: the data section would start at byte " + std::to_string(g->dataOffset) +
                    " but the file has " + std::to_string(m_size) + " bytes");
    const uint64_t dataSize = m_size >= g->dataOffset ? m_size - g->dataOffset : 0;
    std::vector<size_t> order(g->tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (const auto& t : g->tensors) {
        const std::string tn = "tensor '" + t.name + "'";
        if (t.offset % g->alignment != 0)
            return fail(tn + " has data offset " + std::to_string(t.offset) + ", not a multiple of the alignment " +
                        std::to_string(g->alignment));
        if (t.offset > dataSize || t.nbytes > dataSize - t.offset)
            return fail(tn + " data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                        ") lies outside the file (data section holds " + std::to_string(dataSize) +
                        " bytes; truncated file?)");
    }
    // Overlaps among the non-empty ranges only: a zero-size tensor sorted between two overlapping ones
    // must not hide their overlap.
    std::erase_if(order, [&](size_t i) { return g->tensors[i].nbytes == 0; });
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return g->tensors[a].offset < g->tensors[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
        const auto& prev = g->tensors[order[k - 1]];
        const auto& cur = g->tensors[order[k]];
        if (prev.offset + prev.nbytes > cur.offset)
            return fail("tensors '" + prev.name + "' and '" + cur.name + "' overlap in the data section");
    }
    return g;
}

Result<std::shared_ptr<const GgufFile>> GgufFile::parse(std::shared_ptr<MappedFile> file) {
    if (!file) return makeError("GGUF: no file");
    GgufParser p(*file);
    auto r = p.run(file);
    if (!r) return r.error();
    return std::shared_ptr<const GgufFile>(std::move(r.value()));
}

Result<std::shared_ptr<const GgufFile>> GgufFile::open(const std::string& path) {
    auto mf = MappedFile::open(path);
    if (!mf) return mf.error();
    try {
        return parse(std::move(mf.value()));
    } catch (const std::bad_alloc&) {
        return makeError(path + ": out of memory while reading the GGUF header");
    } catch (const std::exception& e) {
        return makeError(path + ": " + e.what());
    }
}

const GgufValue* GgufFile::find(std::string_view key) const {
    if (m_kvIndex.size() != kvs.size()) {  // not built by the parser: plain search
        for (const auto& kv : kvs)
            if (kv.key == key) return &kv.value;
        return nullptr;
    }
    const auto it = m_kvIndex.find(std::string(key));
    return it == m_kvIndex.end() ? nullptr : &kvs[it->second].value;
}

const GgufTensor* GgufFile::findTensor(std::string_view name) const {
    if (m_tensorIndex.size() != tensors.size()) {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
    const auto it = m_tensorIndex.find(std::string(name));
    return it == m_tensorIndex.end() ? nullptr : &tensors[it->second];
}

std::optional<std::string> GgufFile::getString(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v || !v->isString()) return std::nullopt;
    return v->str;
}
std::optional<uint64_t> GgufFile::getUInt(std::string_view key) const {
    const GgufValue* v = find(key);
    return v ? v->toUInt() : std::nullopt;
}
std::optional<int64_t> GgufFile::getInt(std::string_view key) const {
    const GgufValue* v = find(key);
    return v ? v->toInt() : std::nullopt;
}
std::optional<double> GgufFile::getDouble(std::string_view key) const {
    const GgufValue* v = find(key);
    return v ? v->toDouble() : std::nullopt;
}
std::optional<bool> GgufFile::getBool(std::string_view key) const {
    const GgufValue* v = find(key);
    return v ? v->toBool() : std::nullopt;
}

std::span<const uint8_t> GgufFile::tensorBytes(const GgufTensor& t) const {
    return file->bytes(dataOffset + t.offset, t.nbytes);
}

Status GgufFile::checkLlamaLayout() const {
    uint64_t expected = 0;
    for (const auto& t : tensors) {
        if (t.offset != expected)
            return makeError(path + ": tensor '" + t.name + "' has offset " + std::to_string(t.offset) +
                             ", expected " + std::to_string(expected) +
                             " (llama.cpp needs tensor data contiguous in tensor-info order)");
        expected += padTo(t.nbytes, alignment);
    }
    return okStatus();
}

}  // namespace qz

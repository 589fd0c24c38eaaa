// Importance-matrix reader (GGUF and legacy .dat), see imatrix.h. Every count, length and offset read
// from the file is checked against the bytes that remain before it is used.
#include "ggml/imatrix.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "common/mapped_file.h"

namespace qz::ggml {

namespace {

class Cursor {
public:
    Cursor(std::span<const uint8_t> b) : m_b(b) {}
    size_t pos() const { return m_pos; }
    size_t remaining() const { return m_b.size() - m_pos; }
    bool atEnd() const { return m_pos >= m_b.size(); }
    template <class T>
    bool read(T& v) {
        if (remaining() < sizeof(T)) return false;
        std::memcpy(&v, m_b.data() + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return true;
    }
    bool skip(uint64_t n) {
        if (n > remaining()) return false;
        m_pos += static_cast<size_t>(n);
        return true;
    }
    bool readBytes(uint64_t n, std::string& out) {
        if (n > remaining()) return false;
        out.assign(reinterpret_cast<const char*>(m_b.data() + m_pos), static_cast<size_t>(n));
        m_pos += static_cast<size_t>(n);
        return true;
    }
    bool readGgufString(std::string& out) {
        uint64_t n;
        return read(n) && readBytes(n, out);
    }

private:
    std::span<const uint8_t> m_b;
    size_t m_pos = 0;
};

constexpr uint32_t kTypeUint32 = 4, kTypeString = 8, kTypeArray = 9;

size_t scalarSize(uint32_t t) {
    switch (t) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 10: case 11: case 12: return 8;
    default: return 0;
    }
}

bool skipValue(Cursor& c, uint32_t type) {
    if (type == kTypeString) {
        uint64_t n;
        return c.read(n) && c.skip(n);
    }
    if (type == kTypeArray) {
        uint32_t et;
        uint64_t n;
        if (!c.read(et) || !c.read(n)) return false;
        if (et == kTypeString) {
            for (uint64_t i = 0; i < n; ++i) {  // each string takes >= 8 bytes, so this loop is bounded
                uint64_t len;
                if (!c.read(len) || !c.skip(len)) return false;
            }
            return true;
        }
        const size_t es = scalarSize(et);
        if (es == 0 || n > c.remaining() / es) return false;
        return c.skip(n * es);
    }
    const size_t s = scalarSize(type);
    return s != 0 && c.skip(s);
}

struct TensorRef {
    uint64_t nelements = 0;
    uint32_t type = 0;
    uint64_t offset = 0;  // relative to the data section
    bool present = false;
};

bool endsWith(const std::string& s, const std::string& suf, std::string& stem) {
    if (s.size() < suf.size() || s.compare(s.size() - suf.size(), suf.size(), suf) != 0) return false;
    stem = s.substr(0, s.size() - suf.size());
    return true;
}

Result<Imatrix> parseGguf(std::span<const uint8_t> bytes, const std::string& fn) {
    auto bad = [&](const std::string& what) { return makeError(fn + ": invalid imatrix GGUF: " + what); };
    Cursor c(bytes);
    uint32_t magic, version;
    uint64_t nTensors, nKv;
    if (!c.read(magic) || !c.read(version) || !c.read(nTensors) || !c.read(nKv)) return bad("truncated header");
    if (version < 2 || version > 3) return bad("unsupported GGUF version " + std::to_string(version));
    if (nKv > c.remaining() / 12 || nTensors > c.remaining() / 24) return bad("impossible counts in header");

    Imatrix out;
    bool haveDatasets = false, haveChunkCount = false, haveChunkSize = false;
    uint32_t alignment = 32;
    for (uint64_t i = 0; i < nKv; ++i) {
        std::string key;
        uint32_t type;
        if (!c.readGgufString(key) || !c.read(type)) return bad("truncated key/value " + std::to_string(i));
        if (key == "imatrix.datasets" && type == kTypeArray) {
            uint32_t et;
            uint64_t n;
            if (!c.read(et) || !c.read(n)) return bad("truncated imatrix.datasets");
            if (et == kTypeString) {
                for (uint64_t k = 0; k < n; ++k) {
                    std::string s;
                    if (!c.readGgufString(s)) return bad("truncated imatrix.datasets");
                    out.datasets.push_back(std::move(s));
                }
                haveDatasets = true;
                continue;
            }
            // not a string array: skip the elements as any other array
            const size_t es = scalarSize(et);
            if (es == 0 || n > c.remaining() / es || !c.skip(n * es)) return bad("bad imatrix.datasets");
            haveDatasets = true;
            continue;
        }
        if ((key == "imatrix.chunk_count" || key == "imatrix.chunk_size" || key == "general.alignment") &&
            type == kTypeUint32) {
            uint32_t v;
            if (!c.read(v)) return bad("truncated " + key);
            if (key == "imatrix.chunk_count") out.chunkCount = v, haveChunkCount = true;
            else if (key == "imatrix.chunk_size") out.chunkSize = v, haveChunkSize = true;
            else alignment = v;
            continue;
        }
        if (key == "imatrix.chunk_count" || key == "imatrix.chunk_size") return bad(key + " is not UINT32");
        if (!skipValue(c, type)) return bad("bad value for key '" + key + "'");
    }
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) return bad("general.alignment is not a power of 2");

    std::map<std::string, TensorRef> sums2, counts, sums;
    for (uint64_t i = 0; i < nTensors; ++i) {
        std::string name;
        uint32_t nDims;
        if (!c.readGgufString(name) || !c.read(nDims)) return bad("truncated tensor info " + std::to_string(i));
        if (nDims == 0 || nDims > 4) return bad("tensor '" + name + "' has " + std::to_string(nDims) + " dims");
        uint64_t nel = 1;
        for (uint32_t d = 0; d < nDims; ++d) {
            uint64_t ne;
            if (!c.read(ne)) return bad("truncated tensor info for '" + name + "'");
            if (ne > (uint64_t(1) << 40) || (ne != 0 && nel > (uint64_t(1) << 50) / ne))
                return bad("tensor '" + name + "' is too large");
            nel *= ne;
        }
        TensorRef t;
        if (!c.read(t.type) || !c.read(t.offset)) return bad("truncated tensor info for '" + name + "'");
        t.nelements = nel;
        t.present = true;
        std::string stem;
        if (endsWith(name, ".in_sum2", stem))
            sums2[stem] = t;
        else if (endsWith(name, ".counts", stem))
            counts[stem] = t;
        else if (endsWith(name, ".in_sum", stem))
            sums[stem] = t;
    }
    if (!haveDatasets || !haveChunkCount || !haveChunkSize)
        return makeError(fn + ": missing imatrix metadata (imatrix.datasets / chunk_count / chunk_size)");
    const uint64_t dataStart = (c.pos() + alignment - 1) / alignment * alignment;
    if (nTensors == 0) return makeError(fn + ": no data in imatrix file");

    auto f32data = [&](const std::string& name, const TensorRef& t) -> Result<const uint8_t*> {
        if (t.type != 0) return bad("'" + name + "' must be F32");
        const uint64_t nbytes = t.nelements * 4;
        if (t.offset > bytes.size() || dataStart > bytes.size() - t.offset ||
            nbytes > bytes.size() - dataStart - t.offset)
            return bad("data of '" + name + "' lies outside the file");
        return bytes.data() + dataStart + t.offset;
    };

    std::set<std::string> stems;
    for (auto& kv : sums2) stems.insert(kv.first);
    for (auto& kv : counts) stems.insert(kv.first);
    for (auto& kv : sums) stems.insert(kv.first);
    for (const auto& stem : stems) {
        auto s2 = sums2.find(stem);
        auto ct = counts.find(stem);
        if (s2 == sums2.end() || ct == counts.end()) return bad("mismatched sums and counts for " + stem);
        auto s1 = sums.find(stem);
        if (s1 != sums.end() && s1->second.nelements != s2->second.nelements)
            return bad("mismatched sums and counts for " + stem);
        auto pS = f32data(stem + ".in_sum2", s2->second);
        if (!pS) return pS.error();
        auto pC = f32data(stem + ".counts", ct->second);
        if (!pC) return pC.error();
        if (s1 != sums.end()) {
            auto p1 = f32data(stem + ".in_sum", s1->second);
            if (!p1) return p1.error();
        }
        const uint64_t nsums = s2->second.nelements, ncounts = ct->second.nelements;
        if (ncounts == 0 || nsums == 0) continue;  // llama-quantize skips such entries
        if (nsums % ncounts != 0) return bad("in_sum2 size of " + stem + " is not a multiple of its counts");
        const uint64_t ne0 = nsums / ncounts;
        std::vector<float> values(nsums);
        for (uint64_t j = 0; j < ncounts; ++j) {
            float cf;
            std::memcpy(&cf, *pC + 4 * j, 4);
            if (!std::isfinite(cf) || std::fabs(cf) > 9.0e15f) return bad("bad count for " + stem);
            const float count = static_cast<float>(std::lround(cf));
            for (uint64_t i = 0; i < ne0; ++i) {
                float s;
                std::memcpy(&s, *pS + 4 * (j * ne0 + i), 4);
                values[j * ne0 + i] = count > 0.0f ? s / count : 1.0f;
            }
        }
        for (float v : values)
            if (!std::isfinite(v)) return makeError(fn + ": imatrix contains a non-finite value for " + stem);
        out.values[stem] = std::move(values);
    }
    return out;
}

Result<Imatrix> parseLegacy(std::span<const uint8_t> bytes, const std::string& fn) {
    auto bad = [&](const std::string& what) { return makeError(fn + ": invalid legacy imatrix: " + what); };
    Cursor c(bytes);
    int32_t nEntries;
    if (!c.read(nEntries) || nEntries < 1) return bad("no data (entry count missing or < 1)");
    if (static_cast<uint64_t>(nEntries) > c.remaining() / 16) return bad("impossible entry count");
    Imatrix out;
    out.legacy = true;
    for (int32_t e = 0; e < nEntries; ++e) {
        int32_t len, ncall, nval;
        std::string name;
        if (!c.read(len) || len < 0 || !c.readBytes(static_cast<uint64_t>(len), name))
            return bad("failed reading name for entry " + std::to_string(e + 1));
        name = std::string(name.c_str());  // the reader stops at a NUL, as a C string does
        if (!c.read(ncall) || !c.read(nval) || nval < 1)
            return bad("failed reading number of values for entry " + std::to_string(e + 1));
        if (static_cast<uint64_t>(nval) > c.remaining() / 4)
            return bad("failed reading data for entry " + std::to_string(e + 1));
        std::vector<float> values(static_cast<size_t>(nval));
        for (int32_t i = 0; i < nval; ++i) {
            float s = 0;
            c.read(s);  // cannot fail: nval * 4 <= remaining was checked
            values[i] = ncall > 0 ? s / static_cast<float>(static_cast<int64_t>(ncall)) : s;
        }
        for (float v : values)
            if (!std::isfinite(v)) return makeError(fn + ": imatrix contains a non-finite value for " + name);
        out.values[name] = std::move(values);
    }
    if (!c.atEnd()) {  // optional trailer: chunk count, dataset name
        int32_t nCalls;
        if (c.read(nCalls)) {
            out.chunkCount = nCalls;
            int32_t len;
            std::string ds;
            if (c.read(len) && len > 0 && c.readBytes(static_cast<uint64_t>(len), ds))
                out.datasets.push_back(std::string(ds.c_str()));
        }
    }
    return out;
}

}  // namespace

Result<const float*> Imatrix::lookup(const std::string& tensorName, int64_t ne0, int64_t ne2) const {
    auto it = values.find(tensorName);
    if (it == values.end()) return static_cast<const float*>(nullptr);
    if (ne0 > 0 && ne2 > 0 && it->second.size() == static_cast<uint64_t>(ne0) * static_cast<uint64_t>(ne2))
        return it->second.data();
    if (tensorName == "token_embd.weight" || tensorName == "per_layer_token_embd.weight")
        return static_cast<const float*>(nullptr);
    return makeError("imatrix size " + std::to_string(it->second.size()) + " is different from tensor size " +
                     std::to_string(ne0 * ne2) + " for " + tensorName);
}

Result<Imatrix> parseImatrix(std::span<const uint8_t> bytes, const std::string& fileName) {
    try {
        if (bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0) return parseGguf(bytes, fileName);
        return parseLegacy(bytes, fileName);
    } catch (const std::exception& e) {
        return makeError(fileName + ": " + e.what());
    }
}

Result<Imatrix> loadImatrix(const std::string& path) {
    auto f = MappedFile::open(path);
    if (!f) return f.error();
    return parseImatrix(std::span<const uint8_t>((*f)->data(), (*f)->size()), path);
}

}  // namespace qz::ggml

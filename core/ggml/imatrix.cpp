// Importance-matrix reader (GGUF and legacy .dat), see imatrix.h. The GGUF container is parsed and checked
// by GgufFile; the legacy reader checks every count and length against the bytes that remain.
#include "ggml/imatrix.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "common/mapped_file.h"
#include "gguf/gguf_file.h"

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

bool endsWith(const std::string& s, const std::string& suf, std::string& stem) {
    if (s.size() < suf.size() || s.compare(s.size() - suf.size(), suf.size(), suf) != 0) return false;
    stem = s.substr(0, s.size() - suf.size());
    return true;
}

// The GGUF container is parsed (and checked) by GgufFile; this reads the imatrix KVs and tensors.
Result<Imatrix> parseGguf(const GgufFile& g) {
    const std::string& fn = g.path;
    auto bad = [&](const std::string& what) { return makeError(fn + ": invalid imatrix GGUF: " + what); };
    Imatrix out;
    const GgufValue* ds = g.find("imatrix.datasets");
    const GgufValue* cc = g.find("imatrix.chunk_count");
    const GgufValue* cs = g.find("imatrix.chunk_size");
    if (!ds || !cc || !cs)
        return makeError(fn + ": missing imatrix metadata (imatrix.datasets / chunk_count / chunk_size)");
    if (cc->type != GgufType::U32) return bad("imatrix.chunk_count is not UINT32");
    if (cs->type != GgufType::U32) return bad("imatrix.chunk_size is not UINT32");
    out.chunkCount = static_cast<int64_t>(cc->bits);
    out.chunkSize = static_cast<int64_t>(cs->bits);
    if (ds->isArray() && ds->elemType == GgufType::String) out.datasets = ds->strings;
    if (g.tensors.empty()) return makeError(fn + ": no data in imatrix file");

    std::map<std::string, const GgufTensor*> sums2, counts, sums;
    for (const GgufTensor& t : g.tensors) {
        std::string stem;
        if (endsWith(t.name, ".in_sum2", stem))
            sums2[stem] = &t;
        else if (endsWith(t.name, ".counts", stem))
            counts[stem] = &t;
        else if (endsWith(t.name, ".in_sum", stem))
            sums[stem] = &t;
    }
    auto f32data = [&](const GgufTensor& t) -> Result<const uint8_t*> {
        if (t.ggmlType != 0) return bad("'" + t.name + "' must be F32");
        return g.tensorBytes(t).data();
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
        if (s1 != sums.end() && s1->second->numel != s2->second->numel)
            return bad("mismatched sums and counts for " + stem);
        auto pS = f32data(*s2->second);
        if (!pS) return pS.error();
        auto pC = f32data(*ct->second);
        if (!pC) return pC.error();
        if (s1 != sums.end()) {
            auto p1 = f32data(*s1->second);
            if (!p1) return p1.error();
        }
        const uint64_t nsums = s2->second->numel, ncounts = ct->second->numel;
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
        if (bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0) {
            auto g = GgufFile::parse(MappedFile::fromBuffer(std::vector<uint8_t>(bytes.begin(), bytes.end()), fileName));
            if (!g) return g.error();
            return parseGguf(**g);
        }
        return parseLegacy(bytes, fileName);
    } catch (const std::exception& e) {
        return makeError(fileName + ": " + e.what());
    }
}

Result<Imatrix> loadImatrix(const std::string& path) {
    auto f = MappedFile::open(path);
    if (!f) return f.error();
    if ((*f)->size() >= 4 && std::memcmp((*f)->data(), "GGUF", 4) == 0) {
        try {
            auto g = GgufFile::parse(*f);
            if (!g) return g.error();
            return parseGguf(**g);
        } catch (const std::exception& e) {
            return makeError(path + ": " + e.what());
        }
    }
    return parseImatrix(std::span<const uint8_t>((*f)->data(), (*f)->size()), path);
}

}  // namespace qz::ggml

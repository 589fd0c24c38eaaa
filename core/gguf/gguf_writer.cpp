#include "gguf/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace qz {

namespace {

uint64_t padTo(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

// Little-endian serialisation into a memory buffer (the header is built whole, then written).
struct Buf {
    std::vector<uint8_t> b;
    template <class T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void value(const GgufValue& v) {
        switch (v.type) {
        case GgufType::String: str(v.str); break;
        case GgufType::Array:
            put<uint32_t>(static_cast<uint32_t>(v.elemType));
            put<uint64_t>(v.count);
            if (v.elemType == GgufType::String)
                for (const auto& s : v.strings) str(s);
            else
                b.insert(b.end(), v.data.begin(), v.data.end());
            break;
        default: {
            const auto* p = reinterpret_cast<const uint8_t*>(&v.bits);
            b.insert(b.end(), p, p + ggufScalarSize(v.type));
        }
        }
    }
};

std::optional<std::string> checkValue(const std::string& key, const GgufValue& v) {
    if (static_cast<uint32_t>(v.type) >= kGgufTypeCount) return "unknown value type";
    if (v.type != GgufType::Array) return std::nullopt;
    if (v.elemType == GgufType::Array) return "arrays of arrays cannot be written";
    if (static_cast<uint32_t>(v.elemType) >= kGgufTypeCount) return "unknown array element type";
    if (v.elemType == GgufType::String) {
        if (v.strings.size() != v.count) return "string array count does not match its strings";
    } else if (v.data.size() != v.count * ggufScalarSize(v.elemType)) {
        return "array count does not match its data";
    }
    (void)key;
    return std::nullopt;
}

}  // namespace

GgufWriter::GgufWriter(std::string path, DimsConvention dims)
    : m_path(std::move(path)), m_dims(dims) {}

GgufWriter::~GgufWriter() {
    if (m_state != State::Finished) abort();
}

void GgufWriter::abort() {
    m_out.abort();
    if (m_state != State::Finished) m_state = State::Failed;
}

Status GgufWriter::fail(const std::string& what) {
    abort();
    return makeError(m_path + ": " + what);
}

Status GgufWriter::failed(Status s) {
    abort();
    return s;
}

Status GgufWriter::setKv(const std::string& key, GgufValue value) {
    if (m_state != State::Declaring) return makeError(m_path + ": key/values must be set before begin()");
    if (key.empty()) return makeError(m_path + ": empty GGUF key");
    for (const auto& kv : m_kvs)
        if (kv.key == key) return makeError(m_path + ": duplicate GGUF key '" + key + "'");
    if (auto e = checkValue(key, value)) return makeError(m_path + ": key '" + key + "': " + *e);
    if (key == "general.alignment") {
        if (value.type != GgufType::U32) return makeError(m_path + ": general.alignment must be UINT32");
        const auto a = static_cast<uint32_t>(value.bits);
        if (a == 0 || (a & (a - 1)) != 0)
            return makeError(m_path + ": general.alignment " + std::to_string(a) + " is not a power of two");
        m_alignment = a;
    }
    m_kvs.push_back(GgufKV{key, std::move(value)});
    return okStatus();
}

Status GgufWriter::removeKv(const std::string& key) {
    if (m_state != State::Declaring) return makeError(m_path + ": key/values must be set before begin()");
    for (auto it = m_kvs.begin(); it != m_kvs.end(); ++it)
        if (it->key == key) {
            m_kvs.erase(it);
            if (key == "general.alignment") m_alignment = kGgufDefaultAlignment;
            break;
        }
    return okStatus();
}

Status GgufWriter::replaceKv(const std::string& key, GgufValue value) {
    if (auto s = removeKv(key); !s) return s;
    return setKv(key, std::move(value));
}

Status GgufWriter::addTensor(const std::string& name, const std::vector<int64_t>& ne, DType type) {
    if (m_state != State::Declaring) return makeError(m_path + ": tensors must be declared before begin()");
    const std::string tn = m_path + ": tensor '" + name + "'";
    if (name.empty()) return makeError(m_path + ": empty tensor name");
    if (name.size() > kGgufMaxNameBytes) return makeError(tn + ": name longer than 63 bytes");
    for (const auto& t : m_tensors)
        if (t.name == name) return makeError(tn + " declared twice");
    if (ne.size() > kGgufMaxDims) return makeError(tn + ": more than 4 dimensions");
    const auto& tr = traits(type);
    if (tr.ggmlId < 0) return makeError(tn + ": GGUF cannot store dtype " + std::string(tr.name));
    uint64_t numel = 1;
    for (int64_t d : ne) {
        if (d < 0) return makeError(tn + ": negative dimension");
        if (d != 0 && numel > static_cast<uint64_t>(INT64_MAX) / static_cast<uint64_t>(d))
            return makeError(tn + ": too many elements");
        numel *= static_cast<uint64_t>(d);
    }
    const int64_t ne0 = ne.empty() ? 1 : ne[0];
    if (ne0 % tr.blockSize != 0)
        return makeError(tn + ": ne[0] = " + std::to_string(ne0) + " is not a multiple of the " +
                         std::string(tr.name) + " block size " + std::to_string(tr.blockSize));
    const auto nb = bytesFor(type, numel);
    if (!nb) return makeError(tn + ": too large");
    GgufTensor t;
    t.name = name;
    t.ne = ne;
    if (m_dims == DimsConvention::C) {
        while (t.ne.size() > 1 && t.ne.back() == 1) t.ne.pop_back();
        if (t.ne.empty()) t.ne.push_back(1);
    }
    t.ggmlType = static_cast<uint32_t>(tr.ggmlId);
    t.dtype = type;
    t.numel = numel;
    t.nbytes = *nb;
    m_tensors.push_back(std::move(t));
    return okStatus();
}

Status GgufWriter::writeBytes(const void* p, size_t n) {
    if (auto s = m_out.write(p, n); !s) return failed(s);  // names the file and the errno reason
    return okStatus();
}

Status GgufWriter::begin() {
    if (m_state != State::Declaring) return makeError(m_path + ": begin() called twice or after a failure");
    Buf h;
    h.b.insert(h.b.end(), {'G', 'G', 'U', 'F'});
    h.put<uint32_t>(3);
    h.put<uint64_t>(m_tensors.size());
    h.put<uint64_t>(m_kvs.size());
    for (const auto& kv : m_kvs) {
        h.str(kv.key);
        h.put<uint32_t>(static_cast<uint32_t>(kv.value.type));
        h.value(kv.value);
    }
    uint64_t offset = 0;
    for (auto& t : m_tensors) {
        t.offset = offset;
        offset += padTo(t.nbytes, m_alignment);
        h.str(t.name);
        h.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) h.put<uint64_t>(static_cast<uint64_t>(d));
        h.put<uint32_t>(t.ggmlType);
        h.put<uint64_t>(t.offset);
    }
    // gguf-py writes no padding after the tensor infos of a file without tensors (the vocab-only
    // files of tests/data/models/vocab end right after their last KV); with tensors both writers pad.
    const bool noData = m_tensors.empty() && m_dims == DimsConvention::Python;
    m_dataOffset = noData ? h.b.size() : padTo(h.b.size(), m_alignment);
    h.b.resize(m_dataOffset, 0);

    if (auto s = m_out.open(m_path); !s) {
        m_state = State::Failed;
        return s;
    }
    m_tmpPath = m_out.tempPath();
    m_state = State::Writing;
    m_current = 0;
    m_written = 0;
    if (auto s = writeBytes(h.b.data(), h.b.size()); !s) return s;
    // Zero-byte tensors are complete at once.
    while (m_current < m_tensors.size() && m_tensors[m_current].nbytes == 0) ++m_current;
    return okStatus();
}

Status GgufWriter::padCurrent() {
    static const uint8_t zeros[256] = {};
    const auto& t = m_tensors[m_current];
    const uint64_t pad = padTo(t.nbytes, m_alignment) - t.nbytes;
    for (uint64_t left = pad; left > 0;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof zeros));
        if (auto s = writeBytes(zeros, n); !s) return s;
        left -= n;
    }
    return okStatus();
}

Status GgufWriter::writeTensorData(std::span<const uint8_t> bytes) {
    if (m_state != State::Writing) return makeError(m_path + ": writeTensorData() outside begin()/finish()");
    size_t pos = 0;
    while (pos < bytes.size()) {
        if (m_current >= m_tensors.size())
            return fail("more tensor data supplied than the declared tensors hold");
        const auto& t = m_tensors[m_current];
        const uint64_t take = std::min<uint64_t>(t.nbytes - m_written, bytes.size() - pos);
        if (auto s = writeBytes(bytes.data() + pos, static_cast<size_t>(take)); !s) return s;
        pos += take;
        m_written += take;
        if (m_written == t.nbytes) {
            if (auto s = padCurrent(); !s) return s;
            ++m_current;
            m_written = 0;
            while (m_current < m_tensors.size() && m_tensors[m_current].nbytes == 0) ++m_current;
        }
    }
    return okStatus();
}

Status GgufWriter::close() {
    if (m_state != State::Writing) return makeError(m_path + ": close() without a successful begin()");
    if (m_current < m_tensors.size())
        return fail("tensor '" + m_tensors[m_current].name + "' is incomplete (" + std::to_string(m_written) +
                    " of " + std::to_string(m_tensors[m_current].nbytes) + " bytes written)");
    if (auto s = m_out.close(); !s) return failed(s);
    m_state = State::Closed;
    return okStatus();
}

Status GgufWriter::finish() {
    if (m_state == State::Writing)
        if (auto s = close(); !s) return s;
    if (m_state != State::Closed) return makeError(m_path + ": finish() without a successful begin()");
    if (auto s = m_out.commit(); !s) return failed(s);
    m_state = State::Finished;
    return okStatus();
}

}  // namespace qz

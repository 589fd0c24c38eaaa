#include "calib/states.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/fp16.h"

namespace qz::calib {

const char* stateTypeName(StateType t) {
    switch (t) {
    case StateType::F16:
        return "F16";
    case StateType::BF16:
        return "BF16";
    default:
        return "F32";
    }
}

std::optional<StateType> parseStateType(const std::string& s) {
    std::string l = s;
    std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (l == "f32") return StateType::F32;
    if (l == "f16") return StateType::F16;
    if (l == "bf16") return StateType::BF16;
    return std::nullopt;
}

StateStore::~StateStore() { release(); }

void StateStore::release() {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
    m_spillName.clear();
    std::vector<uint8_t>().swap(m_mem);
    std::vector<uint8_t>().swap(m_row);
    m_rows = m_rowValues = 0;
    m_bytes = 0;
}

Status StateStore::init(int64_t rows, int64_t seqLen, int64_t hidden, StateType type, uint64_t maxMemoryBytes,
                        const std::filesystem::path& spillDir, const std::string& prefix) {
    release();
    if (rows <= 0 || seqLen <= 0 || hidden <= 0 || rows > (1 << 24) || seqLen > (1 << 24) ||
        hidden > (1 << 24))
        return makeError("carried states: bad size");
    const uint64_t rowValues = static_cast<uint64_t>(seqLen) * static_cast<uint64_t>(hidden);
    if (rowValues > (uint64_t{1} << 32) || rowValues * static_cast<uint64_t>(rows) > (uint64_t{1} << 40))
        return makeError("carried states: " + std::to_string(rows) + " × " + std::to_string(seqLen) + " × " +
                         std::to_string(hidden) + " values are too many");
    m_rows = rows;
    m_rowValues = static_cast<int64_t>(rowValues);
    m_type = type;
    m_valueBytes = type == StateType::F32 ? 4 : 2;
    m_bytes = rowValues * static_cast<uint64_t>(rows) * m_valueBytes;
    try {
        m_row.resize(static_cast<size_t>(rowValues) * m_valueBytes);
        if (maxMemoryBytes == 0 || m_bytes <= maxMemoryBytes) {
            m_mem.resize(m_bytes);
            return okStatus();
        }
    } catch (const std::bad_alloc&) {
        return makeError("carried states: out of memory for " + std::to_string(m_bytes) + " bytes");
    }
    std::string tmpl = (spillDir / (prefix + "-XXXXXX")).string();
    m_fd = ::mkstemp(tmpl.data());
    if (m_fd < 0)
        return makeError("cannot create a temporary file in " + spillDir.string() + ": " +
                         std::strerror(errno));
    ::unlink(tmpl.c_str()); // gone with the process, whatever happens
    m_spillName = tmpl;
    if (::ftruncate(m_fd, static_cast<off_t>(m_bytes)) != 0)
        return makeError("cannot size the temporary file " + m_spillName + " (" + std::to_string(m_bytes) +
                         " bytes): " + std::strerror(errno));
    return okStatus();
}

Status StateStore::get(int64_t row, std::span<float> out) {
    if (row < 0 || row >= m_rows || static_cast<int64_t>(out.size()) != m_rowValues)
        return makeError("carried states: bad row access");
    const uint64_t rowBytes = static_cast<uint64_t>(m_rowValues) * m_valueBytes;
    const uint8_t* src = nullptr;
    if (m_fd >= 0) {
        uint8_t* dst = m_type == StateType::F32 ? reinterpret_cast<uint8_t*>(out.data()) : m_row.data();
        uint64_t done = 0;
        while (done < rowBytes) {
            const ssize_t r =
                ::pread(m_fd, dst + done, rowBytes - done, static_cast<off_t>(row * rowBytes + done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                return makeError("cannot read the temporary file " + m_spillName + ": " +
                                 std::strerror(errno));
            done += static_cast<uint64_t>(r);
        }
        if (m_type == StateType::F32) return okStatus();
        src = m_row.data();
    } else {
        src = m_mem.data() + row * rowBytes;
        if (m_type == StateType::F32) {
            std::memcpy(out.data(), src, rowBytes);
            return okStatus();
        }
    }
    const auto* h = reinterpret_cast<const uint16_t*>(src);
    if (m_type == StateType::F16)
        for (size_t i = 0; i < out.size(); ++i)
            out[i] = fp16ToFp32(h[i]);
    else
        for (size_t i = 0; i < out.size(); ++i)
            out[i] = bf16ToFp32(h[i]);
    return okStatus();
}

Status StateStore::put(int64_t row, std::span<const float> in) {
    if (row < 0 || row >= m_rows || static_cast<int64_t>(in.size()) != m_rowValues)
        return makeError("carried states: bad row access");
    const uint64_t rowBytes = static_cast<uint64_t>(m_rowValues) * m_valueBytes;
    const uint8_t* src = reinterpret_cast<const uint8_t*>(in.data());
    if (m_type != StateType::F32) {
        auto* h = reinterpret_cast<uint16_t*>(m_row.data());
        if (m_type == StateType::F16) {
            for (size_t i = 0; i < in.size(); ++i) {
                if (!(std::fabs(in[i]) <= 65504.0f))
                    return makeError("a hidden state value (" + std::to_string(in[i]) +
                                     ") does not fit F16: carry the states as F32 or BF16");
                h[i] = fp32ToFp16(in[i]);
            }
        } else {
            for (size_t i = 0; i < in.size(); ++i)
                h[i] = fp32ToBf16(in[i]);
        }
        src = m_row.data();
    }
    if (m_fd < 0) {
        std::memcpy(m_mem.data() + row * rowBytes, src, rowBytes);
        return okStatus();
    }
    uint64_t done = 0;
    while (done < rowBytes) {
        const ssize_t r =
            ::pwrite(m_fd, src + done, rowBytes - done, static_cast<off_t>(row * rowBytes + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return makeError("cannot write the temporary file " + m_spillName + ": " + std::strerror(errno));
        done += static_cast<uint64_t>(r);
    }
    return okStatus();
}

}  // namespace qz::calib

#include "tokenizer/spm_model.h"

#include <cstring>

#include "common/mapped_file.h"

namespace qz {

namespace {

class PbReader {
public:
    PbReader(std::span<const uint8_t> d) : m_d(d) {}
    bool done() const { return m_pos >= m_d.size(); }

    bool varint(uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (m_pos >= m_d.size()) return false;
            const uint8_t b = m_d[m_pos++];
            v |= uint64_t(b & 0x7F) << shift;
            if (!(b & 0x80)) return true;
        }
        return false;  // more than 10 bytes
    }
    bool fixed32(uint32_t& v) {
        if (m_d.size() - m_pos < 4) return false;
        v = uint32_t(m_d[m_pos]) | uint32_t(m_d[m_pos + 1]) << 8 | uint32_t(m_d[m_pos + 2]) << 16 |
            uint32_t(m_d[m_pos + 3]) << 24;
        m_pos += 4;
        return true;
    }
    bool bytes(std::span<const uint8_t>& out) {
        uint64_t len = 0;
        if (!varint(len) || len > m_d.size() - m_pos) return false;
        out = m_d.subspan(m_pos, size_t(len));
        m_pos += size_t(len);
        return true;
    }
    // Skips a field's value of the given wire type.
    bool skip(uint32_t wire) {
        uint64_t v;
        uint32_t f;
        std::span<const uint8_t> s;
        switch (wire) {
            case 0: return varint(v);
            case 1:
                if (m_d.size() - m_pos < 8) return false;
                m_pos += 8;
                return true;
            case 2: return bytes(s);
            case 5: return fixed32(f);
            default: return false;  // groups (3, 4) are not used by SentencePiece
        }
    }
    // Reads a field key; false at a malformed key.
    bool key(uint32_t& field, uint32_t& wire) {
        uint64_t k = 0;
        if (!varint(k) || (k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) return false;
        field = uint32_t(k >> 3);
        wire = uint32_t(k & 7);
        return true;
    }
    size_t pos() const { return m_pos; }

private:
    std::span<const uint8_t> m_d;
    size_t m_pos = 0;
};

Error bad(const std::string& what, const std::string& detail, size_t pos) {
    return makeError(what + ": not a valid SentencePiece model (" + detail + " near byte " + std::to_string(pos) + ")");
}

// Parses a message; onVarint / onBytes / onFixed32 get (field, value); unknown fields are skipped.
template <class FV, class FB, class F32>
bool parseMessage(std::span<const uint8_t> d, FV onVarint, FB onBytes, F32 onFixed32, size_t& errPos) {
    PbReader r(d);
    while (!r.done()) {
        uint32_t field = 0, wire = 0;
        errPos = r.pos();
        if (!r.key(field, wire)) return false;
        if (wire == 0) {
            uint64_t v;
            if (!r.varint(v)) return false;
            if (!onVarint(field, v)) return false;
        } else if (wire == 2) {
            std::span<const uint8_t> s;
            if (!r.bytes(s)) return false;
            if (!onBytes(field, s)) return false;
        } else if (wire == 5) {
            uint32_t v;
            if (!r.fixed32(v)) return false;
            if (!onFixed32(field, v)) return false;
        } else if (!r.skip(wire)) {
            return false;
        }
    }
    return true;
}

}  // namespace

Result<SpmModel> parseSpmModel(std::span<const uint8_t> data, const std::string& what) {
    SpmModel m;
    size_t errPos = 0;
    std::string problem;
    auto ignoreV = [](uint32_t, uint64_t) { return true; };
    auto ignoreB = [](uint32_t, std::span<const uint8_t>) { return true; };
    auto ignoreF = [](uint32_t, uint32_t) { return true; };

    auto onTop = [&](uint32_t field, std::span<const uint8_t> s) -> bool {
        if (field == 1) {
            SpmPiece p;
            bool havePiece = false;
            size_t inner = 0;
            const bool ok = parseMessage(
                s,
                [&](uint32_t f, uint64_t v) {
                    if (f == 3) {
                        if (v < 1 || v > 6) {
                            problem = "piece type " + std::to_string(v) + " out of range";
                            return false;
                        }
                        p.type = int32_t(v);
                    }
                    return true;
                },
                [&](uint32_t f, std::span<const uint8_t> b) {
                    if (f == 1) {
                        p.piece.assign(reinterpret_cast<const char*>(b.data()), b.size());
                        havePiece = true;
                    }
                    return true;
                },
                [&](uint32_t f, uint32_t v) {
                    if (f == 2) std::memcpy(&p.score, &v, 4);
                    return true;
                },
                inner);
            if (!ok) {
                if (problem.empty()) problem = "malformed piece " + std::to_string(m.pieces.size());
                return false;
            }
            if (!havePiece) {
                problem = "piece " + std::to_string(m.pieces.size()) + " has no text";
                return false;
            }
            m.pieces.push_back(std::move(p));
        } else if (field == 2) {
            size_t inner = 0;
            const bool ok = parseMessage(
                s,
                [&](uint32_t f, uint64_t v) {
                    const auto i32 = int32_t(uint32_t(v));  // int32 fields: negative values are 10-byte varints
                    switch (f) {
                        case 3: m.modelType = i32; break;
                        case 35: m.byteFallback = v != 0; break;
                        case 40: m.unkId = i32; break;
                        case 41: m.bosId = i32; break;
                        case 42: m.eosId = i32; break;
                        case 43: m.padId = i32; break;
                        default: break;
                    }
                    return true;
                },
                ignoreB, ignoreF, inner);
            if (!ok) {
                problem = "malformed trainer_spec";
                return false;
            }
        } else if (field == 3) {
            size_t inner = 0;
            const bool ok = parseMessage(
                s,
                [&](uint32_t f, uint64_t v) {
                    if (f == 3) m.addDummyPrefix = v != 0;
                    if (f == 4) m.removeExtraWhitespaces = v != 0;
                    return true;
                },
                [&](uint32_t f, std::span<const uint8_t> b) {
                    if (f == 1) m.normalizerName.assign(reinterpret_cast<const char*>(b.data()), b.size());
                    return true;
                },
                ignoreF, inner);
            if (!ok) {
                problem = "malformed normalizer_spec";
                return false;
            }
        }
        return true;
    };
    if (!parseMessage(data, ignoreV, onTop, ignoreF, errPos))
        return bad(what, problem.empty() ? "malformed field" : problem, errPos);
    if (m.pieces.empty()) return makeError(what + ": SentencePiece model has no pieces");
    if (m.pieces.size() > size_t(INT32_MAX)) return makeError(what + ": too many pieces");
    return m;
}

Result<SpmModel> loadSpmModel(const std::string& path) {
    auto f = MappedFile::open(path);
    if (!f) return f.error();
    const auto& file = *f.value();
    return parseSpmModel(file.bytes(0, file.size()), path);
}

}  // namespace qz

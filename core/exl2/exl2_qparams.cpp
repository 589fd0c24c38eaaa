#include "exl2/exl2_qparams.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

namespace qz::exl2 {

namespace {

// Python's repr of a float for the values the tables hold: the shortest round-trip form ("0.05", "0.95").
// An integral value prints as "1" (the tables write the integer 1; only the 8-bit head option writes 1.0,
// which exllamav2 would print "1.0").
std::string pyNumber(double v) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

bool validBits(int b) {
    return b == 2 || b == 3 || b == 4 || b == 5 || b == 6 || b == 8;
}

} // namespace

std::vector<int> QParams::groupsPerBits(int64_t rows) const {
    std::vector<int> out;
    out.reserve(bits.size());
    int64_t remaining = rows;
    for (size_t j = 0; j < bits.size() && j < bitsProp.size(); ++j) {
        auto it = groupSize.find(bits[j]);
        const int64_t gsz = it == groupSize.end() ? 0 : it->second;
        if (gsz <= 0) {
            out.push_back(0);
            continue;
        }
        // Python: math.ceil(min(rows * p, remaining_rows) / gsz) — float product, int or float min, true
        // division.
        const double rp = static_cast<double>(rows) * bitsProp[j];
        const double m = rp < static_cast<double>(remaining) ? rp : static_cast<double>(remaining);
        const int64_t g = static_cast<int64_t>(std::ceil(m / static_cast<double>(gsz)));
        out.push_back(static_cast<int>(g));
        remaining -= g * gsz;
    }
    return out;
}

int64_t QParams::totalBits(int64_t rows, int64_t columns, bool bias) const {
    const std::vector<int> g = groupsPerBits(rows);
    int64_t groups = 0;
    for (int x : g)
        groups += x;
    int64_t total = 0;
    int64_t tr = rows;
    for (size_t j = 0; j < g.size(); ++j) {
        auto it = groupSize.find(bits[j]);
        int64_t r = (it == groupSize.end() ? 0 : it->second) * static_cast<int64_t>(g[j]);
        if (r > tr) r = tr;
        tr -= r;
        total += r * columns * bits[j]; // q_weight
    }
    total += groups * 16;                  // q_scale_max
    total += groups * (16 + 16);           // q_groups
    total += groups * columns * scaleBits; // q_scale
    total += rows * 32;                    // q_invperm
    if (bias) total += 16 * columns;       // bias (fp16, [columns])
    return total;
}

double QParams::bpw(int64_t rows, int64_t columns, bool bias) const {
    int64_t numel = rows * columns;
    if (bias) numel += columns;
    return static_cast<double>(totalBits(rows, columns, bias)) / static_cast<double>(numel);
}

std::string QParams::desc() const {
    std::string s;
    for (size_t j = 0; j < bits.size() && j < bitsProp.size(); ++j) {
        if (!s.empty()) s += "/";
        auto it = groupSize.find(bits[j]);
        s += pyNumber(bitsProp[j]) + ":" + std::to_string(bits[j]) + "b_" +
             std::to_string(it == groupSize.end() ? 0 : it->second) + "g";
    }
    s += " s" + std::to_string(scaleBits);
    return s;
}

nlohmann::ordered_json qparamsToJsonValue(const QParams& qp) {
    nlohmann::ordered_json j;
    nlohmann::ordered_json gs = nlohmann::ordered_json::object();
    for (int b : qp.bits) { // Python's dict keeps the insertion order of the bits list
        auto it = qp.groupSize.find(b);
        if (it != qp.groupSize.end()) gs[std::to_string(b)] = it->second;
    }
    j["group_size"] = gs;
    j["bits"] = qp.bits;
    nlohmann::ordered_json props = nlohmann::ordered_json::array();
    for (double p : qp.bitsProp) {
        if (p == std::floor(p) && std::fabs(p) < 1e15)
            props.push_back(static_cast<int64_t>(p)); // the tables' integer 1 stays 1
        else
            props.push_back(p);
    }
    j["bits_prop"] = props;
    j["scale_bits"] = qp.scaleBits;
    return j;
}

std::string QParams::toJson() const {
    return qparamsToJsonValue(*this).dump();
}

bool QParams::operator==(const QParams& o) const {
    return bits == o.bits && bitsProp == o.bitsProp && groupSize == o.groupSize && scaleBits == o.scaleBits;
}

Status validateQParams(const QParams& qp) {
    const std::string what = "EXL2 quantization setting";
    if (qp.bits.empty()) return makeError(what + ": no bit widths");
    if (qp.bits.size() > 6) return makeError(what + ": more than 6 bit widths");
    if (qp.bitsProp.size() != qp.bits.size())
        return makeError(what + ": " + std::to_string(qp.bits.size()) + " bit widths but " +
                         std::to_string(qp.bitsProp.size()) + " proportions");
    if (qp.scaleBits != 4)
        return makeError(what + ": scale_bits must be 4 (got " + std::to_string(qp.scaleBits) + ")");
    double sum = 0;
    for (size_t j = 0; j < qp.bits.size(); ++j) {
        const int b = qp.bits[j];
        if (!validBits(b))
            return makeError(what + ": bit width " + std::to_string(b) + " is not one of 2, 3, 4, 5, 6, 8");
        if (j > 0 && b >= qp.bits[j - 1])
            return makeError(what +
                             ": bit widths must be in decreasing order (the loader needs the groups in "
                             "non-increasing bit order)");
        const double p = qp.bitsProp[j];
        if (!std::isfinite(p) || p <= 0 || p > 1)
            return makeError(what + ": proportion for " + std::to_string(b) + " bits must be in (0, 1]");
        sum += p;
        auto it = qp.groupSize.find(b);
        if (it == qp.groupSize.end())
            return makeError(what + ": no group size for " + std::to_string(b) + " bits");
        const int gs = it->second;
        const int unit = b == 2 ? 16 : 32;
        if (gs <= 0 || gs > 65536 || gs % unit != 0)
            return makeError(what + ": group size " + std::to_string(gs) + " for " + std::to_string(b) +
                             " bits must be a positive multiple of " + std::to_string(unit) +
                             " (at most 65536)");
    }
    if (std::fabs(sum - 1.0) > 1e-9)
        return makeError(what + ": proportions must sum to 1 (got " + pyNumber(sum) + ")");
    return okStatus();
}

namespace {

template <class J> Result<QParams> fromJsonImpl(const J& j) {
    const std::string what = "EXL2 quantization setting (JSON)";
    if (!j.is_object()) return makeError(what + ": not an object");
    for (const char* key : {"group_size", "bits", "bits_prop", "scale_bits"})
        if (!j.contains(key)) return makeError(what + ": missing \"" + std::string(key) + "\"");
    QParams qp;
    const auto& jb = j["bits"];
    if (!jb.is_array() || jb.empty() || jb.size() > 6)
        return makeError(what + ": \"bits\" must be a list of 1..6 integers");
    for (const auto& v : jb) {
        if (!v.is_number_integer()) return makeError(what + ": \"bits\" must hold integers");
        const int64_t b = v.template get<int64_t>();
        if (b < 2 || b > 8 || !validBits(static_cast<int>(b)))
            return makeError(what + ": bit width " + v.dump() + " is not one of 2, 3, 4, 5, 6, 8");
        qp.bits.push_back(static_cast<int>(b));
    }
    const auto& jp = j["bits_prop"];
    if (!jp.is_array() || jp.size() != jb.size())
        return makeError(what + ": \"bits_prop\" must be a list as long as \"bits\"");
    for (const auto& v : jp) {
        if (!v.is_number()) return makeError(what + ": \"bits_prop\" must hold numbers");
        qp.bitsProp.push_back(v.template get<double>());
    }
    const auto& js = j["scale_bits"];
    if (!js.is_number_integer()) return makeError(what + ": \"scale_bits\" must be an integer");
    const int64_t sb = js.template get<int64_t>();
    if (sb != 4) return makeError(what + ": scale_bits must be 4 (got " + js.dump() + ")");
    qp.scaleBits = 4;
    auto gsValue = [&](const J& v, int& out) -> bool {
        if (!v.is_number_integer()) return false;
        const int64_t g = v.template get<int64_t>();
        if (g <= 0 || g > 65536) return false;
        out = static_cast<int>(g);
        return true;
    };
    const auto& jg = j["group_size"];
    if (jg.is_object()) {
        for (auto it = jg.begin(); it != jg.end(); ++it) {
            const std::string& k = it.key();
            int b = 0;
            auto r = std::from_chars(k.data(), k.data() + k.size(), b);
            if (k.empty() || k.size() > 2 || r.ec != std::errc() || r.ptr != k.data() + k.size())
                return makeError(what + ": group_size key \"" + k.substr(0, 16) + "\" is not a bit width");
            int g = 0;
            if (!gsValue(it.value(), g))
                return makeError(what + ": group size for " + k + " bits must be an integer in 1..65536");
            // Only the widths in "bits" are used; others are ignored (exllamav2 keeps but never reads them).
            for (int x : qp.bits)
                if (x == b) qp.groupSize[b] = g;
        }
    } else if (jg.is_array()) {
        if (jg.size() != jb.size()) return makeError(what + ": group_size list must be as long as \"bits\"");
        for (size_t i = 0; i < jg.size(); ++i) {
            int g = 0;
            if (!gsValue(jg[i], g)) return makeError(what + ": group sizes must be integers in 1..65536");
            qp.groupSize[qp.bits[i]] = g;
        }
    } else {
        int g = 0;
        if (!gsValue(jg, g))
            return makeError(what + ": \"group_size\" must be an object, a list or an integer");
        for (int b : qp.bits)
            qp.groupSize[b] = g;
    }
    if (auto s = validateQParams(qp); !s) return s.error();
    return qp;
}

} // namespace

Result<QParams> qparamsFromJsonValue(const nlohmann::json& j) {
    return fromJsonImpl(j);
}
Result<QParams> qparamsFromJsonValue(const nlohmann::ordered_json& j) {
    return fromJsonImpl(j);
}

Result<QParams> qparamsFromJson(const std::string& text) {
    if (text.size() > (1u << 20)) return makeError("EXL2 quantization setting (JSON): longer than 1 MiB");
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return makeError("EXL2 quantization setting (JSON): not valid JSON");
    return qparamsFromJsonValue(j);
}

// ---- The tables, transcribed from exllamav2 v0.3.2 exllamav2/conversion/qparams.py (qparams_attn lines
// 131-247, qparams_mlp 249-336, qparams_headoptions 338-347). QParams(group_size, bits, bits_prop, 4).

namespace {

QParams Q(int gs, std::vector<int> bits, std::vector<double> prop) {
    QParams q;
    for (int b : bits)
        q.groupSize[b] = gs;
    q.bits = std::move(bits);
    q.bitsProp = std::move(prop);
    return q;
}
QParams Q(std::vector<int> gs, std::vector<int> bits, std::vector<double> prop) {
    QParams q;
    for (size_t i = 0; i < bits.size(); ++i)
        q.groupSize[bits[i]] = gs[i];
    q.bits = std::move(bits);
    q.bitsProp = std::move(prop);
    return q;
}

} // namespace

// clang-format off
const std::vector<std::vector<QParams>>& attnOptions() {
    static const std::vector<std::vector<QParams>> t = {
        {Q(64, {3, 2}, {0.05, 0.95}), Q(64, {3, 2}, {0.05, 0.95}), Q(64, {3, 2}, {0.05, 0.95}), Q(64, {3, 2}, {0.05, 0.95})},
        {Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.25, 0.75}), Q(64, {3, 2}, {0.1, 0.9})},
        {Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9}), Q(64, {3, 2}, {0.1, 0.9})},
        {Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9})},
        {Q(128, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9})},
        {Q(128, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9}), Q(64, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.1, 0.9})},
        {Q(128, {4}, {1}), Q(128, {4}, {1}), Q(128, {4}, {1}), Q(128, {4}, {1})},
        {Q(128, {4}, {1}), Q(128, {4}, {1}), Q(64, {4}, {1}), Q(128, {4}, {1})},
        {Q(64, {4}, {1}), Q(64, {4}, {1}), Q(32, {4}, {1}), Q(64, {4}, {1})},
        {Q(32, {4}, {1}), Q(32, {4}, {1}), Q(32, {4}, {1}), Q(32, {4}, {1})},
        {Q(128, {5, 4}, {0.1, 0.9}), Q(128, {5, 4}, {0.1, 0.9}), Q(64, {5, 4}, {0.1, 0.9}), Q(128, {5, 4}, {0.1, 0.9})},
        {Q(64, {5, 4}, {0.1, 0.9}), Q(64, {5, 4}, {0.1, 0.9}), Q(32, {5, 4}, {0.1, 0.9}), Q(64, {5, 4}, {0.1, 0.9})},
        {Q(64, {5, 4}, {0.1, 0.9}), Q(64, {5, 4}, {0.1, 0.9}), Q(64, {5}, {1}), Q(64, {5, 4}, {0.1, 0.9})},
        {Q(32, {5, 4}, {0.1, 0.9}), Q(32, {5, 4}, {0.1, 0.9}), Q(32, {5}, {1}), Q(32, {5, 4}, {0.1, 0.9})},
        {Q(128, {6, 5}, {0.1, 0.9}), Q(128, {6, 5}, {0.1, 0.9}), Q(128, {6}, {1}), Q(128, {6, 5}, {0.1, 0.9})},
        {Q(32, {6, 5}, {0.1, 0.9}), Q(32, {6, 5}, {0.1, 0.9}), Q(32, {6}, {1}), Q(32, {6, 5}, {0.1, 0.9})},
        {Q(128, {6}, {1}), Q(128, {6}, {1}), Q(128, {6}, {1}), Q(128, {6}, {1})},
        {Q(32, {6}, {1}), Q(32, {6}, {1}), Q(32, {8}, {1}), Q(32, {6}, {1})},
        {Q(128, {8}, {1}), Q(128, {8}, {1}), Q(128, {8}, {1}), Q(128, {8}, {1})},
    };
    return t;
}

const std::vector<std::vector<QParams>>& mlpOptions() {
    static const std::vector<std::vector<QParams>> t = {
        {Q(64, {3, 2}, {0.05, 0.95}), Q(64, {3, 2}, {0.05, 0.95}), Q({32, 64, 64}, {6, 3, 2}, {0.05, 0.2, 0.75})},
        {Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.25, 0.75}), Q({32, 64, 64}, {6, 3, 2}, {0.05, 0.2, 0.75})},
        {Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.3, 0.7}), Q(32, {5, 3}, {0.05, 0.95})},
        {Q(64, {3, 2}, {0.1, 0.9}), Q(64, {3, 2}, {0.3, 0.7}), Q(32, {5, 4}, {0.05, 0.95})},
        {Q(128, {4, 3}, {0.1, 0.9}), Q(128, {4, 3}, {0.25, 0.75}), Q({32, 128, 128}, {8, 4, 3}, {0.05, 0.1, 0.85})},
        {Q(32, {4, 3}, {0.1, 0.9}), Q(32, {4, 3}, {0.25, 0.75}), Q({32, 32, 32}, {8, 4, 3}, {0.05, 0.1, 0.85})},
        {Q(32, {4, 3}, {0.1, 0.9}), Q(32, {4, 3}, {0.25, 0.75}), Q({32, 128}, {8, 4}, {0.05, 0.95})},
        {Q(128, {4}, {1}), Q(32, {4}, {1}), Q({32, 128}, {8, 4}, {0.05, 0.95})},
        {Q(32, {4}, {1}), Q(32, {4}, {1}), Q({32, 32}, {8, 4}, {0.05, 0.95})},
        {Q(128, {5, 4}, {0.1, 0.9}), Q(128, {5, 4}, {0.25, 0.75}), Q({32, 128, 128}, {8, 5, 4}, {0.05, 0.1, 0.85})},
        {Q(32, {5, 4}, {0.1, 0.9}), Q(32, {5, 4}, {0.25, 0.75}), Q({32, 32, 32}, {8, 5, 4}, {0.05, 0.1, 0.85})},
        {Q(128, {6, 5}, {0.1, 0.9}), Q(128, {6, 5}, {0.25, 0.75}), Q({32, 128, 128}, {8, 6, 5}, {0.05, 0.1, 0.85})},
        {Q(32, {6, 5}, {0.1, 0.9}), Q(32, {6, 5}, {0.25, 0.75}), Q({32, 32, 32}, {8, 6, 5}, {0.05, 0.1, 0.85})},
        {Q(128, {6}, {1}), Q(128, {6}, {1}), Q({32, 128}, {8, 6}, {0.05, 0.95})},
        {Q(128, {8, 6}, {0.1, 0.9}), Q(128, {8, 6}, {0.1, 0.9}), Q(128, {8, 6}, {0.15, 0.85})},
        {Q(128, {8, 6}, {0.1, 0.9}), Q(128, {8, 6}, {0.1, 0.9}), Q(128, {8}, {1})},
        {Q(128, {8}, {1}), Q(128, {8}, {1}), Q(128, {8}, {1})},
    };
    return t;
}

Result<QParams> headOptions(int headBits) {
    switch (headBits) {
    case 2: return Q(32, {4, 2}, {0.3, 0.7});
    case 3: return Q(32, {4, 3}, {0.15, 0.85});
    case 4: return Q(32, {6, 4}, {0.15, 0.85});
    case 5: return Q(128, {6, 5}, {0.15, 0.85});
    case 6: return Q(128, {8, 6}, {0.15, 0.85});
    case 8: return Q(128, {8}, {1.0});
    default:
        return makeError("EXL2: head bits must be 2, 3, 4, 5, 6 or 8 (got " + std::to_string(headBits) + ")");
    }
}

// clang-format on

QParamsReduced reduceQParams(const std::vector<std::vector<QParams>>& options, bool ignoreGate) {
    QParamsReduced r;
    if (options.empty()) return r;
    const size_t dim = options[0].size();
    r.perSlot.resize(dim);
    std::vector<std::map<std::string, int>> descToIdx(dim);
    for (const auto& o : options) {
        std::vector<int> m;
        for (size_t idx = 0; idx < o.size() && idx < dim; ++idx) {
            if (ignoreGate && idx == 0) continue;
            const std::string d = o[idx].desc();
            auto it = descToIdx[idx].find(d);
            int j;
            if (it == descToIdx[idx].end()) {
                j = static_cast<int>(r.perSlot[idx].size());
                descToIdx[idx][d] = j;
                r.perSlot[idx].push_back(o[idx]);
            } else {
                j = it->second;
            }
            m.push_back(j);
        }
        r.maps.push_back(std::move(m));
    }
    return r;
}

} // namespace qz::exl2

#include "stats/robust_range.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>

#include "common/fp16.h"
#include "common/parallel.h"

namespace qz {

namespace {
constexpr uint32_t kMagMask = 0x7FFF;
constexpr uint32_t kMaxFiniteMag = 0x7F7F;  // exponent 0xFF (Inf / NaN) starts at 0x7F80

bool finiteKey(uint32_t key) { return (key & 0x7F80) != 0x7F80; }

float keyValue(uint32_t mag) { return std::bit_cast<float>(mag << 16); }
// All |v| with bits >> 16 == mag lie in [lowerMag(mag), upperMag(mag)).
double lowerMag(uint32_t mag) { return keyValue(mag); }
double upperMag(uint32_t mag) { return mag >= kMaxFiniteMag ? double(FLT_MAX) : double(keyValue(mag + 1)); }

// Counts every float32 pattern >> 16 of x into per-thread tables, then sums them into out.
void countKeys(const float* x, uint64_t n, std::vector<uint64_t>& out) {
    const int threads = defaultThreadCount();
    std::vector<std::vector<uint64_t>> tables(threads);
    parallelFor(n, [&](size_t b, size_t e, int t) {
        auto& tab = tables[t];
        if (tab.empty()) tab.assign(65536, 0);
        const uint32_t* bits = reinterpret_cast<const uint32_t*>(x);
        for (size_t i = b; i < e; ++i) ++tab[bits[i] >> 16];
    }, threads, 1 << 16);
    out.assign(65536, 0);
    for (const auto& tab : tables)
        if (!tab.empty())
            for (size_t k = 0; k < 65536; ++k) out[k] += tab[k];
}

// Counts every 16-bit pattern of data (F16 / BF16 storage).
void countPatterns16(const uint16_t* v, uint64_t n, std::vector<uint64_t>& out) {
    const int threads = defaultThreadCount();
    std::vector<std::vector<uint64_t>> tables(threads);
    parallelFor(n, [&](size_t b, size_t e, int t) {
        auto& tab = tables[t];
        if (tab.empty()) tab.assign(65536, 0);
        for (size_t i = b; i < e; ++i) ++tab[v[i]];
    }, threads, 1 << 18);
    out.assign(65536, 0);
    for (const auto& tab : tables)
        if (!tab.empty())
            for (size_t k = 0; k < 65536; ++k) out[k] += tab[k];
}
}  // namespace

void ValueSketch::addCounts(const uint64_t* byKey) {
    for (uint32_t k = 0; k < 65536; ++k) {
        if (!byKey[k]) continue;
        m_counts[k] += byKey[k];
        (finiteKey(k) ? m_finite : m_nonFinite) += byKey[k];
    }
}

void ValueSketch::add(const float* x, uint64_t n) {
    if (!x || n == 0) return;
    std::vector<uint64_t> keys;
    countKeys(x, n, keys);
    addCounts(keys.data());
}

bool ValueSketch::addRaw(DType t, const uint8_t* data, uint64_t n) {
    if (t == DType::F32) {
        add(reinterpret_cast<const float*>(data), n);
        return true;
    }
    if (t != DType::F16 && t != DType::BF16) return false;
    if (!data || n == 0) return true;
    std::vector<uint64_t> patterns;
    countPatterns16(reinterpret_cast<const uint16_t*>(data), n, patterns);
    if (t == DType::BF16) {  // a bf16 pattern is the top half of its float32
        addCounts(patterns.data());
        return true;
    }
    std::vector<uint64_t> keys(65536, 0);
    for (uint32_t p = 0; p < 65536; ++p) {
        if (!patterns[p]) continue;
        keys[std::bit_cast<uint32_t>(fp16ToFp32(static_cast<uint16_t>(p))) >> 16] += patterns[p];
    }
    addCounts(keys.data());
    return true;
}

void ValueSketch::merge(const ValueSketch& o) {
    for (size_t k = 0; k < 65536; ++k) m_counts[k] += o.m_counts[k];
    m_finite += o.m_finite;
    m_nonFinite += o.m_nonFinite;
}

ValueRange robustRange(const ValueSketch& s, double tail, bool symmetric) {
    const uint64_t n = s.finiteCount();
    if (n == 0) return {};
    if (!(tail >= 0)) tail = 0;  // also NaN
    tail = std::min(tail, 0.25);
    const auto allowed = static_cast<uint64_t>(std::floor(tail * static_cast<double>(n)));
    const auto& c = s.counts();
    ValueRange r;
    if (symmetric) {
        // Largest magnitudes first: stop at the bucket holding the (allowed + 1)-th largest |x|.
        uint64_t cum = 0;
        double a = 0;
        for (int64_t m = kMaxFiniteMag; m >= 0; --m) {
            cum += c[size_t(m)] + c[size_t(m) | 0x8000];
            if (cum > allowed) {
                a = upperMag(uint32_t(m));
                break;
            }
        }
        if (a <= 1e-30) a = 0.5;  // all (near) zero
        return {-a, a};
    }
    // Values in ascending order: negative magnitudes from the largest down, then positive ones up.
    auto countAt = [&](int64_t ord) -> uint64_t {  // ord 0 .. 2*(kMaxFiniteMag+1)-1, ascending value
        const int64_t half = kMaxFiniteMag + 1;
        return ord < half ? c[size_t(kMaxFiniteMag - ord) | 0x8000] : c[size_t(ord - half)];
    };
    auto lowerAt = [&](int64_t ord) {
        const int64_t half = kMaxFiniteMag + 1;
        return ord < half ? -upperMag(uint32_t(kMaxFiniteMag - ord)) : lowerMag(uint32_t(ord - half));
    };
    auto upperAt = [&](int64_t ord) {
        const int64_t half = kMaxFiniteMag + 1;
        return ord < half ? -lowerMag(uint32_t(kMaxFiniteMag - ord)) : upperMag(uint32_t(ord - half));
    };
    const int64_t ords = 2 * (int64_t(kMaxFiniteMag) + 1);
    uint64_t cum = 0;
    for (int64_t o = 0; o < ords; ++o) {
        cum += countAt(o);
        if (cum > allowed) {
            r.lo = lowerAt(o);
            break;
        }
    }
    cum = 0;
    for (int64_t o = ords - 1; o >= 0; --o) {
        cum += countAt(o);
        if (cum > allowed) {
            r.hi = upperAt(o);
            break;
        }
    }
    if (!(r.hi - r.lo > 1e-30)) {  // all values (near) zero
        r.lo -= 0.5;
        r.hi += 0.5;
    }
    return r;
}

ValueRange robustRange(const float* x, uint64_t n, double tail, bool symmetric) {
    ValueSketch s;
    s.add(x, n);
    return robustRange(s, tail, symmetric);
}

}  // namespace qz

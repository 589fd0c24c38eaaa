#include "stats/histogram.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/fp16.h"
#include "common/parallel.h"

namespace qz {

uint64_t Histogram::total() const {
    return std::accumulate(counts.begin(), counts.end(), uint64_t{0}) + below + above + nonFinite;
}

void Histogram::merge(const Histogram& o) {
    if (counts.empty()) {
        *this = o;
        return;
    }
    if (o.counts.size() != counts.size()) return;  // callers merge like with like
    for (size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
    below += o.below;
    above += o.above;
    nonFinite += o.nonFinite;
}

namespace {
// Bin index of v: -1 below, bins above, -2 not finite.
struct Binner {
    double lo, hi, inv;
    int bins;
    Binner(int b, double l, double h) : lo(l), hi(h), inv(b / (h - l)), bins(b) {}
    int operator()(float v) const {
        if (!std::isfinite(v)) return -2;
        if (v < lo) return -1;
        if (v > hi) return bins;
        int i = static_cast<int>((v - lo) * inv);
        return std::min(i, bins - 1);  // v == hi lands in the last bin
    }
};

void addTo(Histogram& h, int idx, uint64_t count = 1) {
    if (idx == -2)
        h.nonFinite += count;
    else if (idx == -1)
        h.below += count;
    else if (idx >= h.bins())
        h.above += count;
    else
        h.counts[idx] += count;
}
}  // namespace

void Histogram::add(float v) { addTo(*this, Binner(bins(), lo, hi)(v)); }

Histogram histogramF32(const float* x, uint64_t n, int bins, double lo, double hi) {
    Histogram result(bins, lo, hi);
    if (bins <= 0 || !(hi > lo)) return result;
    const Binner binner(bins, lo, hi);
    const int threads = defaultThreadCount();
    std::vector<Histogram> parts(threads, Histogram(bins, lo, hi));
    parallelFor(n, [&](size_t b, size_t e, int t) {
        Histogram& h = parts[t];
        for (size_t i = b; i < e; ++i) addTo(h, binner(x[i]));
    }, threads, 1 << 16);
    for (const auto& p : parts) result.merge(p);
    return result;
}

Histogram histogramRaw(DType t, const uint8_t* data, uint64_t n, int bins, double lo, double hi) {
    if (t == DType::F32) return histogramF32(reinterpret_cast<const float*>(data), n, bins, lo, hi);
    if (t != DType::F16 && t != DType::BF16) return Histogram();
    Histogram result(bins, lo, hi);
    if (bins <= 0 || !(hi > lo)) return result;
    // A 16-bit type has 65536 possible values: count each bit pattern, then bin the patterns.
    const int threads = defaultThreadCount();
    std::vector<std::vector<uint32_t>> tables(threads, std::vector<uint32_t>(65536, 0));
    std::vector<std::vector<uint64_t>> spill(threads);  // guards 32-bit counters on huge tensors
    parallelFor(n, [&](size_t b, size_t e, int th) {
        uint32_t* tab = tables[th].data();
        const uint16_t* v = reinterpret_cast<const uint16_t*>(data);
        constexpr size_t kFlush = size_t{1} << 31;  // < 2^32 increments between flushes
        for (size_t start = b; start < e; start += kFlush) {
            const size_t end = std::min(e, start + kFlush);
            for (size_t i = start; i < end; ++i) ++tab[v[i]];
            if (end < e) {
                auto& sp = spill[th];
                if (sp.empty()) sp.assign(65536, 0);
                for (size_t k = 0; k < 65536; ++k) sp[k] += tab[k], tab[k] = 0;
            }
        }
    }, threads, 1 << 18);
    const Binner binner(bins, lo, hi);
    for (uint32_t pattern = 0; pattern < 65536; ++pattern) {
        uint64_t c = 0;
        for (int th = 0; th < threads; ++th) {
            c += tables[th][pattern];
            if (!spill[th].empty()) c += spill[th][pattern];
        }
        if (c == 0) continue;
        const auto bitsv = static_cast<uint16_t>(pattern);
        const float v = t == DType::F16 ? fp16ToFp32(bitsv) : bf16ToFp32(bitsv);
        addTo(result, binner(v), c);
    }
    return result;
}

MinMax minMaxF32(const float* x, uint64_t n) {
    if (n == 0) return {};
    const int threads = defaultThreadCount();
    std::vector<MinMax> parts(threads, MinMax{std::numeric_limits<float>::infinity(),
                                              -std::numeric_limits<float>::infinity()});
    parallelFor(n, [&](size_t b, size_t e, int t) {
        MinMax m = parts[t];
        for (size_t i = b; i < e; ++i) {
            if (!std::isfinite(x[i])) continue;
            m.min = std::min(m.min, x[i]);
            m.max = std::max(m.max, x[i]);
        }
        parts[t] = m;
    }, threads, 1 << 16);
    MinMax r = parts[0];
    for (const auto& p : parts) {
        r.min = std::min(r.min, p.min);
        r.max = std::max(r.max, p.max);
    }
    if (r.min > r.max) r = MinMax{0, 0};  // nothing finite
    return r;
}

void ErrorStats::finish() {
    mse = n ? sumSqErr / static_cast<double>(n) : 0;
    sqnrDb = sumSqErr > 0 ? 10.0 * std::log10(sumSqOrig / sumSqErr) : std::numeric_limits<double>::infinity();
    const double denom = std::sqrt(sumSqOrig) * std::sqrt(sumSqDeq);
    cosine = denom > 0 ? dot / denom : (sumSqOrig == sumSqDeq ? 1.0 : 0.0);
}

void ErrorStats::merge(const ErrorStats& o) {
    n += o.n;
    maxAbs = std::max(maxAbs, o.maxAbs);
    sumSqOrig += o.sumSqOrig;
    sumSqErr += o.sumSqErr;
    sumSqDeq += o.sumSqDeq;
    dot += o.dot;
    finish();
}

ErrorStats errorStats(const float* orig, const float* deq, uint64_t n) {
    // Sums over fixed pieces of 2^16 values, merged in order: the same doubles for any thread count.
    constexpr uint64_t kPiece = uint64_t{1} << 16;
    const uint64_t nPieces = (n + kPiece - 1) / kPiece;
    std::vector<ErrorStats> parts(static_cast<size_t>(nPieces));
    parallelFor(static_cast<size_t>(nPieces), [&](size_t p0, size_t p1, int) {
        for (size_t p = p0; p < p1; ++p) {
            const uint64_t b = p * kPiece, e = std::min(n, b + kPiece);
            ErrorStats s;
            s.n = e - b;
            for (uint64_t i = b; i < e; ++i) {
                const double o = orig[i], d = deq[i], err = d - o;
                s.sumSqOrig += o * o;
                s.sumSqDeq += d * d;
                s.sumSqErr += err * err;
                s.dot += o * d;
                s.maxAbs = std::max(s.maxAbs, std::fabs(err));
            }
            parts[p] = s;
        }
    }, defaultThreadCount(), 1);
    ErrorStats r;
    for (const auto& p : parts) r.merge(p);
    r.finish();
    return r;
}

}  // namespace qz

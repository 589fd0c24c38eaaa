// Fixed-range histograms with a fast path for 16-bit inputs, and error statistics.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/dtype.h"

namespace qz {

struct Histogram {
    double lo = -2.0, hi = 2.0;          // range [lo, hi); values == hi go to the last bin
    std::vector<uint64_t> counts;        // bins
    uint64_t below = 0, above = 0;       // outside the range
    uint64_t nonFinite = 0;              // NaN / Inf

    Histogram() = default;
    Histogram(int bins, double lo_, double hi_) : lo(lo_), hi(hi_), counts(bins, 0) {}
    int bins() const { return static_cast<int>(counts.size()); }
    double binWidth() const { return (hi - lo) / bins(); }
    double binCenter(int i) const { return lo + (i + 0.5) * binWidth(); }
    uint64_t total() const;              // all counted values, in range or not
    void merge(const Histogram& o);      // same bins and range required
    void add(float v);                   // one value (slow path, used by tests)
};

// Histogram of n floats, multi-threaded.
Histogram histogramF32(const float* x, uint64_t n, int bins, double lo, double hi);
// Histogram straight from stored bytes for F32/F16/BF16 (16-bit types use a 65536-entry table, so
// the cost is one increment per element). Returns an empty histogram (bins()==0) for other dtypes.
Histogram histogramRaw(DType t, const uint8_t* data, uint64_t n, int bins, double lo, double hi);

struct MinMax {
    float min = 0, max = 0;
};
MinMax minMaxF32(const float* x, uint64_t n);

// Error of a reconstruction `deq` of `orig`.
struct ErrorStats {
    uint64_t n = 0;
    double mse = 0;          // mean (deq - orig)^2
    double maxAbs = 0;       // max |deq - orig|
    double sqnrDb = 0;       // 10 log10(sum orig^2 / sum err^2); +inf if no error
    double cosine = 1;       // cosine similarity
    double sumSqOrig = 0, sumSqErr = 0, dot = 0, sumSqDeq = 0;  // raw sums, for merging

    void merge(const ErrorStats& o);   // combine two disjoint sets, recomputing the derived figures
    void finish();                     // derive mse/sqnr/cosine from the sums
};
ErrorStats errorStats(const float* orig, const float* deq, uint64_t n);

}  // namespace qz

// Robust histogram ranges: a streaming sketch of a value distribution, from which a range that holds
// all but a small tail fraction of the values is read (e.g. the 0.1 % and 99.9 % percentiles), so a
// plot of weights that mostly lie within ±0.1 is not squeezed into one bar by a few large values.
//
// The sketch counts values by the top 16 bits of their float32 pattern (sign, exponent and 7 mantissa
// bits): 65536 counters, one increment per value, mergeable, and exact for BF16 inputs.
// A bucket spans at most 2^-7 of its values' magnitude, so a percentile read from it is off by less
// than 0.8 % of the value. The range is then applied by an exact histogram (stats/histogram.h), whose
// below / above counters are the outliers beyond it.
#pragma once

#include <cstdint>
#include <vector>

#include "common/dtype.h"

namespace qz {

class ValueSketch {
public:
    ValueSketch() : m_counts(65536, 0) {}
    void add(const float* x, uint64_t n);                      // multi-threaded
    // F32 / F16 / BF16 straight from stored bytes (16-bit types: one table lookup per value).
    // false for other dtypes (nothing is added).
    bool addRaw(DType t, const uint8_t* data, uint64_t n);
    void merge(const ValueSketch& o);
    uint64_t finiteCount() const { return m_finite; }
    uint64_t nonFiniteCount() const { return m_nonFinite; }
    const std::vector<uint64_t>& counts() const { return m_counts; }  // by float32 bits >> 16

private:
    void addCounts(const uint64_t* byPattern16);  // a table indexed by float32 bits >> 16
    std::vector<uint64_t> m_counts;
    uint64_t m_finite = 0, m_nonFinite = 0;
};

struct ValueRange {
    double lo = -1.0, hi = 1.0;
};

// A range [lo, hi] with at most tail × N finite values below lo and at most tail × N above hi
// (symmetric: [-a, a] with at most tail × N values of |x| > a), as tight as the sketch allows.
// tail is clamped to [0, 0.25]. Degenerate data (no finite value, one value) still gives lo < hi.
ValueRange robustRange(const ValueSketch& s, double tail = 0.001, bool symmetric = false);

// The same straight from values (one sketch pass).
ValueRange robustRange(const float* x, uint64_t n, double tail = 0.001, bool symmetric = false);

}  // namespace qz

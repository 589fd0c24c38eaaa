// Robust histogram ranges (stats/robust_range.h) on synthetic data with planted outliers, checked
// against order statistics of the sorted data and outlier counts made by a direct loop; and the
// quantize job's whole-model histograms with the robust default and the notebook's fixed preset.
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/fp16.h"
#include "jobs/quantize_job.h"
#include "stats/histogram.h"
#include "stats/robust_range.h"

using namespace qz;

namespace {
constexpr double kBucket = 1.0 / 128;  // a sketch bucket spans at most 2^-7 of its magnitude

// 200,000 weights ~ N(0, 0.02) with 50 planted at +5 and 30 at -3 (far outside the bulk).
std::vector<float> plantedData() {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<float> v(200000);
    for (auto& x : v) x = nd(rng);
    for (int i = 0; i < 50; ++i) v[size_t(i) * 3001] = 5.0f;
    for (int i = 0; i < 30; ++i) v[size_t(i) * 4001 + 17] = -3.0f;
    return v;
}

uint64_t countIf(const std::vector<float>& v, auto pred) {
    return static_cast<uint64_t>(std::count_if(v.begin(), v.end(), pred));
}
}  // namespace

class TestRobustRange : public QObject {
    Q_OBJECT
private slots:
    void percentilesWithPlantedOutliers() {
        const std::vector<float> v = plantedData();
        std::vector<float> sorted = v;
        std::sort(sorted.begin(), sorted.end());
        const uint64_t n = v.size(), allowed = 200;  // floor(0.001 * 200000)
        const ValueRange r = robustRange(v.data(), n, 0.001);
        // lo is at most the (allowed+1)-th smallest value, and within one bucket of it.
        const double qLo = sorted[allowed], qHi = sorted[n - 1 - allowed];
        QVERIFY2(r.lo <= qLo && r.lo >= qLo - kBucket * std::fabs(qLo) - 1e-12,
                 qPrintable(QStringLiteral("lo %1 vs %2").arg(r.lo).arg(qLo)));
        QVERIFY2(r.hi >= qHi && r.hi <= qHi + kBucket * std::fabs(qHi) + 1e-12,
                 qPrintable(QStringLiteral("hi %1 vs %2").arg(r.hi).arg(qHi)));
        QVERIFY(r.lo > -0.1 && r.hi < 0.1);  // the bulk, not the planted ±3 / 5

        // The histogram over that range counts the outliers exactly as a direct loop does.
        const Histogram h = histogramF32(v.data(), n, 150, r.lo, r.hi);
        const uint64_t below = countIf(v, [&](float x) { return x < r.lo; });
        const uint64_t above = countIf(v, [&](float x) { return x > r.hi; });
        QCOMPARE(h.below, below);
        QCOMPARE(h.above, above);
        QVERIFY(below <= allowed && above <= allowed);
        QVERIFY(below >= 30 && above >= 50);  // every planted outlier is beyond the range
        QCOMPARE(h.total(), n);
    }

    void symmetricFromAbsPercentile() {
        const std::vector<float> v = plantedData();
        std::vector<float> mags(v.size());
        std::transform(v.begin(), v.end(), mags.begin(), [](float x) { return std::fabs(x); });
        std::sort(mags.begin(), mags.end());
        const uint64_t n = v.size(), allowed = 200;
        const ValueRange r = robustRange(v.data(), n, 0.001, true);
        const double q = mags[n - 1 - allowed];
        QCOMPARE(r.lo, -r.hi);
        QVERIFY(r.hi >= q && r.hi <= q * (1 + kBucket));
        const uint64_t outside = countIf(v, [&](float x) { return std::fabs(x) > r.hi; });
        QVERIFY(outside <= allowed && outside >= 80);
        const Histogram h = histogramF32(v.data(), n, 100, r.lo, r.hi);
        QCOMPARE(h.below + h.above, outside);
    }

    void degenerateData() {
        const std::vector<float> zeros(1000, 0.f);
        const ValueRange z = robustRange(zeros.data(), zeros.size());
        QVERIFY(z.lo < 0 && z.hi > 0);  // all zero still gets a usable range
        const std::vector<float> nonFinite = {NAN, INFINITY, -INFINITY};
        const ValueRange e = robustRange(nonFinite.data(), nonFinite.size());
        QCOMPARE(e.lo, -1.0);
        QCOMPARE(e.hi, 1.0);
        const std::vector<float> one = {0.25f};
        const ValueRange o = robustRange(one.data(), 1);
        QVERIFY(o.lo <= 0.25 && o.hi > 0.25 && o.hi - o.lo < 0.01);
        ValueSketch s;
        s.add(nonFinite.data(), nonFinite.size());
        QCOMPARE(s.nonFiniteCount(), uint64_t(3));
        QCOMPARE(s.finiteCount(), uint64_t(0));
    }

    void rawSixteenBitMatchesFloat() {
        const std::vector<float> v = plantedData();
        std::vector<uint16_t> bf(v.size()), hf(v.size());
        std::vector<float> bfF(v.size()), hfF(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
            bf[i] = fp32ToBf16(v[i]);
            hf[i] = fp32ToFp16(v[i]);
            bfF[i] = bf16ToFp32(bf[i]);
            hfF[i] = fp16ToFp32(hf[i]);
        }
        ValueSketch a, b, c, d;
        QVERIFY(a.addRaw(DType::BF16, reinterpret_cast<const uint8_t*>(bf.data()), bf.size()));
        b.add(bfF.data(), bfF.size());
        QCOMPARE(a.counts(), b.counts());
        QVERIFY(c.addRaw(DType::F16, reinterpret_cast<const uint8_t*>(hf.data()), hf.size()));
        d.add(hfF.data(), hfF.size());
        QCOMPARE(c.counts(), d.counts());
        QVERIFY(!c.addRaw(DType::Q8_0, reinterpret_cast<const uint8_t*>(hf.data()), 32));
        // Merging sketches of two halves equals one sketch of the whole.
        ValueSketch h1, h2, all;
        h1.add(v.data(), 1000);
        h2.add(v.data() + 1000, v.size() - 1000);
        all.add(v.data(), v.size());
        h1.merge(h2);
        QCOMPARE(h1.counts(), all.counts());
        QCOMPARE(h1.finiteCount(), uint64_t(v.size()));
    }

    void quantizeJobWholeModel() {
        auto m = openModel(std::string(QZ_RESOURCES_DIR) + "/demo/stories260K");
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
        QuantizeParams params;
        params.spec.method = QuantMethod::Absmax;
        params.spec.bits = 4;
        auto r = runQuantize(**m, params, {});
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        // The selected originals, read directly.
        std::vector<float> all;
        for (const auto& t : r->tensors) {
            auto x = readTensorF32(**m, (*m)->tensors[t.tensorIndex]);
            QVERIFY(x.ok());
            all.insert(all.end(), x->begin(), x->end());
        }
        std::vector<float> sorted = all;
        std::sort(sorted.begin(), sorted.end());
        const uint64_t n = all.size(), allowed = n / 1000;
        const Histogram& h = r->modelOriginal;
        QCOMPARE(h.bins(), 150);
        QVERIFY(h.lo <= sorted[allowed] && h.hi >= sorted[n - 1 - allowed]);
        QVERIFY(h.lo >= sorted[allowed] * (1 + kBucket) - 1e-12);
        QVERIFY(h.hi <= sorted[n - 1 - allowed] * (1 + kBucket) + 1e-12);
        QVERIFY(h.hi - h.lo < 4.0);  // tighter than the notebook's (-2, 2)
        QCOMPARE(h.below, countIf(all, [&](float x) { return x < h.lo; }));
        QCOMPARE(h.above, countIf(all, [&](float x) { return x > h.hi; }));
        QCOMPARE(h.total(), n);
        QCOMPARE(r->modelDequantized.lo, h.lo);  // overlaid on the same bins
        QCOMPARE(r->modelDequantized.hi, h.hi);

        params.modelHistogram = HistogramSpec::notebookPreset();
        auto f = runQuantize(**m, params, {});
        QVERIFY(f.ok());
        QCOMPARE(f->modelOriginal.lo, -2.0);
        QCOMPARE(f->modelOriginal.hi, 2.0);
        QCOMPARE(f->modelOriginal.bins(), 150);

        params.modelHistogram.mode = HistogramRangeMode::Robust;
        params.modelHistogram.tail = 0.5;
        QVERIFY(!runQuantize(**m, params, {}).ok());  // a tail beyond 0.25 is refused
    }
};

QTEST_APPLESS_MAIN(TestRobustRange)
#include "test_robust_range.moc"

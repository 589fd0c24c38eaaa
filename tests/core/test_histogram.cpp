// Histograms and error statistics against values computed by hand / by a naive loop.
#include <QtTest>

#include <cmath>
#include <random>

#include "common/fp16.h"
#include "stats/histogram.h"

using namespace qz;

class TestHistogram : public QObject {
    Q_OBJECT
private slots:
    void binsByHand();
    void rawMatchesF32_data();
    void rawMatchesF32();
    void errorStatsByHand();
    void mergeIsAddition();
    void errorStatsSameForAnyThreadCount();
};

void TestHistogram::binsByHand() {
    // 4 bins over [0, 1): edges 0, .25, .5, .75, 1
    const float v[] = {0.f, 0.1f, 0.25f, 0.49f, 0.5f, 0.99f, 1.0f, -0.01f, 1.01f, NAN, INFINITY};
    Histogram h = histogramF32(v, 11, 4, 0.0, 1.0);
    QCOMPARE(h.counts, (std::vector<uint64_t>{2, 2, 1, 2}));  // 1.0 == hi goes to the last bin
    QCOMPARE(h.below, uint64_t(1));
    QCOMPARE(h.above, uint64_t(1));
    QCOMPARE(h.nonFinite, uint64_t(2));
    QCOMPARE(h.total(), uint64_t(11));
    QCOMPARE(h.binCenter(0), 0.125);
}

void TestHistogram::rawMatchesF32_data() {
    QTest::addColumn<bool>("bf16");
    QTest::newRow("f16") << false;
    QTest::newRow("bf16") << true;
}

// The 65536-entry table path must bin exactly like converting every value and binning it.
void TestHistogram::rawMatchesF32() {
    QFETCH(bool, bf16);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 0.8f);
    const size_t n = 300000;
    std::vector<uint16_t> raw(n);
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) {
        raw[i] = bf16 ? fp32ToBf16(nd(rng)) : fp32ToFp16(nd(rng));
        f[i] = bf16 ? bf16ToFp32(raw[i]) : fp16ToFp32(raw[i]);
    }
    const Histogram a = histogramRaw(bf16 ? DType::BF16 : DType::F16, reinterpret_cast<const uint8_t*>(raw.data()), n,
                                     150, -2.0, 2.0);
    Histogram naive(150, -2.0, 2.0);
    for (float v : f) naive.add(v);
    QCOMPARE(a.counts, naive.counts);
    QCOMPARE(a.below, naive.below);
    QCOMPARE(a.above, naive.above);
    QCOMPARE(a.total(), uint64_t(n));
}

void TestHistogram::errorStatsByHand() {
    const float o[] = {1.f, 2.f, -2.f, 0.f};
    const float d[] = {1.f, 2.5f, -2.f, -0.5f};
    ErrorStats e = errorStats(o, d, 4);
    QCOMPARE(e.n, uint64_t(4));
    QVERIFY(std::fabs(e.mse - 0.125) < 1e-12);                           // (0.25 + 0.25) / 4
    QVERIFY(std::fabs(e.maxAbs - 0.5) < 1e-12);
    QVERIFY(std::fabs(e.sqnrDb - 10 * std::log10(9.0 / 0.5)) < 1e-9);   // Σo² = 9, Σerr² = 0.5
    QVERIFY(std::fabs(e.cosine - 10.0 / (3.0 * std::sqrt(11.5))) < 1e-9);  // o·d = 1+5+4 = 10, |d|² = 1+6.25+4+0.25
    const ErrorStats same = errorStats(o, o, 4);
    QVERIFY(std::isinf(same.sqnrDb));
    QCOMPARE(same.cosine, 1.0);
}

void TestHistogram::mergeIsAddition() {
    std::vector<float> a(1000), b(777);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-3, 3);
    for (auto& v : a) v = u(rng);
    for (auto& v : b) v = u(rng);
    Histogram ha = histogramF32(a.data(), a.size(), 50, -2, 2);
    ha.merge(histogramF32(b.data(), b.size(), 50, -2, 2));
    std::vector<float> all(a);
    all.insert(all.end(), b.begin(), b.end());
    const Histogram h = histogramF32(all.data(), all.size(), 50, -2, 2);
    QCOMPARE(ha.counts, h.counts);
    QCOMPARE(ha.below + ha.above, h.below + h.above);
    ErrorStats e1 = errorStats(a.data(), b.data(), 500), e2 = errorStats(a.data() + 500, b.data() + 200, 500);
    e1.merge(e2);
    std::vector<float> d(b.begin(), b.begin() + 500);
    d.insert(d.end(), b.begin() + 200, b.begin() + 700);
    const ErrorStats whole = errorStats(a.data(), d.data(), 1000);
    QVERIFY(std::fabs(e1.mse - whole.mse) < 1e-9);
    QCOMPARE(e1.maxAbs, whole.maxAbs);
}

void TestHistogram::errorStatsSameForAnyThreadCount() {
    // The report's figures are sums over fixed pieces of the tensor, merged in order: the same doubles
    // whatever the default thread count (QZ_THREADS) is.
    std::vector<float> o(1000003), d(o.size());
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (size_t i = 0; i < o.size(); ++i) {
        o[i] = nd(rng);
        d[i] = o[i] + 0.01f * nd(rng);
    }
    const QByteArray saved = qgetenv("QZ_THREADS");
    const bool had = qEnvironmentVariableIsSet("QZ_THREADS");
    qputenv("QZ_THREADS", "1");
    const ErrorStats a = errorStats(o.data(), d.data(), o.size());
    for (const char* t : {"2", "3", "7"}) {
        qputenv("QZ_THREADS", t);
        const ErrorStats b = errorStats(o.data(), d.data(), o.size());
        QVERIFY2(a.sumSqErr == b.sumSqErr && a.sumSqOrig == b.sumSqOrig && a.sumSqDeq == b.sumSqDeq &&
                     a.dot == b.dot && a.maxAbs == b.maxAbs && a.n == b.n,
                 t);
    }
    if (had)
        qputenv("QZ_THREADS", saved);
    else
        qunsetenv("QZ_THREADS");
    QVERIFY(std::fabs(a.mse - 1e-4) < 2e-6);  // the noise's variance, 0.01²
}

QTEST_APPLESS_MAIN(TestHistogram)
#include "test_histogram.moc"

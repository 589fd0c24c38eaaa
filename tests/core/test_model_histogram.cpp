// The model-wide histogram (jobs/model_histogram.h) on the test models: its counts equal a direct loop
// over every selected weight read as F32, for the robust default and for a fixed range, on safetensors
// (F32 / BF16 stored bytes) and on a GGUF with block types; the robust range leaves at most the stated
// tail beyond each edge; cancelling stops it; the CLI's `info --histogram` prints the same totals.
#include <QProcess>
#include <QtTest>

#include <cmath>

#include "common/fp16.h"
#include "jobs/model_histogram.h"
#include "model/model.h"
#include "time_scale.h"

using namespace qz;

namespace {

// The reference: every selected tensor read as F32, binned by a plain loop with the histogram's rule
// (values == hi go to the last bin; NaN/Inf counted apart).
Histogram directHistogram(const Model& m, const TensorFilter& f, int bins, double lo, double hi) {
    Histogram h(bins, lo, hi);
    auto sel = f.select(m);
    if (!sel) return h;
    for (size_t i : *sel) {
        auto v = readTensorF32(m, m.tensors[i]);
        if (!v) return h;
        for (float x : *v) {
            if (!std::isfinite(x)) {
                ++h.nonFinite;
            } else if (x < lo) {
                ++h.below;
            } else if (x > hi) {
                ++h.above;
            } else {
                int b = static_cast<int>((x - lo) / (hi - lo) * bins);
                h.counts[std::min(b, bins - 1)]++;
            }
        }
    }
    return h;
}

uint64_t selectedValues(const Model& m, const TensorFilter& f) {
    uint64_t n = 0;
    const auto sel = f.select(m);
    if (!sel) return 0;
    for (size_t i : *sel) n += m.tensors[i].numel();
    return n;
}

}  // namespace

class TestModelHistogram : public QObject {
    Q_OBJECT
private slots:
    void fixedRangeEqualsDirectCount_data() {
        QTest::addColumn<QString>("path");
        QTest::newRow("safetensors F32") << QString(QZ_TEST_DATA "/models/bard-llama");
        QTest::newRow("gguf") << QString(QZ_TEST_DATA "/models/stories260K/stories260K.gguf");
        QTest::newRow("golden Q3_K_M") << QString(QZ_TEST_DATA "/golden/bard-llama/bard-llama-Q3_K_M.gguf");
    }
    void fixedRangeEqualsDirectCount() {
        QFETCH(QString, path);
        if (!QFileInfo::exists(path)) QFAIL(qPrintable("test file missing: " + path));
        auto m = openModel(path.toStdString());
        QVERIFY2(m, m ? "" : m.error().message.c_str());
        ModelHistogramParams p;
        p.spec = HistogramSpec::notebookPreset();
        p.spec.lo = -0.05;  // narrow enough that both edges have outliers
        p.spec.hi = 0.07;
        p.spec.bins = 37;
        auto r = computeModelHistogram(**m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        const Histogram want = directHistogram(**m, p.filter, p.spec.bins, p.spec.lo, p.spec.hi);
        QCOMPARE(r->histogram.below, want.below);
        QCOMPARE(r->histogram.above, want.above);
        QCOMPARE(r->histogram.nonFinite, want.nonFinite);
        QVERIFY(want.below > 0 && want.above > 0);
        // Bin edges: a value exactly on an edge may land on either side depending on rounding of the
        // bin index, so compare counts bin by bin with a small allowance, and totals exactly.
        uint64_t sumGot = 0, sumWant = 0;
        for (int b = 0; b < p.spec.bins; ++b) {
            sumGot += r->histogram.counts[b];
            sumWant += want.counts[b];
            const double diff = std::fabs(double(r->histogram.counts[b]) - double(want.counts[b]));
            QVERIFY2(diff <= 2 + 1e-4 * double(want.counts[b]),
                     qPrintable(QString("bin %1: %2 vs %3").arg(b).arg(r->histogram.counts[b]).arg(want.counts[b])));
        }
        QCOMPARE(sumGot, sumWant);
        QCOMPARE(r->values, selectedValues(**m, p.filter));
        QCOMPARE(r->histogram.total(), r->values);
    }

    void robustRangeKeepsTheTailOutside() {
        auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
        QVERIFY(m);
        ModelHistogramParams p;  // robust, tail 0.1 %
        auto r = computeModelHistogram(**m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        const double n = double(r->values);
        // The sketch's buckets are at most 2^-7 of the value wide: allow that slack in the tail counts.
        QVERIFY(double(r->histogram.below) <= 0.001 * n * 1.05 + 1);
        QVERIFY(double(r->histogram.above) <= 0.001 * n * 1.05 + 1);
        const Histogram want = directHistogram(**m, p.filter, p.spec.bins, r->histogram.lo, r->histogram.hi);
        QCOMPARE(r->histogram.below, want.below);
        QCOMPARE(r->histogram.above, want.above);
        // The range is much tighter than the extreme values (the notebook's ±2 would show one bar).
        QVERIFY(r->histogram.hi - r->histogram.lo < 1.0);
    }

    void cancelStops() {
        auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
        QVERIFY(m);
        int calls = 0;
        auto r = computeModelHistogram(**m, {}, [&](const ProgressInfo&) { return ++calls < 5; });
        QVERIFY(!r);
        QVERIFY(r.error().cancelled);
    }

    void badSpecRefused() {
        auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
        QVERIFY(m);
        ModelHistogramParams p;
        p.spec.bins = 0;
        QVERIFY(!computeModelHistogram(**m, p));
        p.spec = HistogramSpec::notebookPreset();
        p.spec.lo = 1;
        p.spec.hi = 1;
        QVERIFY(!computeModelHistogram(**m, p));
    }

    void cliPrintsTheHistogram() {
        QProcess cli;
        cli.start(QZ_BINARY_DIR "/app/quantzoo-cli",
                  {"info", QZ_TEST_DATA "/models/bard-llama", "--no-tensors", "--histogram", "--range", "-2,2",
                   "--bins", "10"});
        QVERIFY(cli.waitForFinished(scaledMs(60000)));
        QCOMPARE(cli.exitCode(), 0);
        const QString out = QString::fromUtf8(cli.readAllStandardOutput());
        auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
        QVERIFY(m);
        const QString want = QString("histogram of %1 values").arg(selectedValues(**m, TensorFilter{}));
        QVERIFY2(out.contains(want), qPrintable(out));
        QVERIFY(out.contains("range [-2, 2], 10 bins"));
        QProcess bad;
        bad.start(QZ_BINARY_DIR "/app/quantzoo-cli", {"info", QZ_TEST_DATA "/models/bard-llama", "--bins", "10"});
        QVERIFY(bad.waitForFinished(scaledMs(60000)));
        QVERIFY(bad.exitCode() != 0);
    }
};

QTEST_GUILESS_MAIN(TestModelHistogram)
#include "test_model_histogram.moc"

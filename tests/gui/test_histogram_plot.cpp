// The reusable plot widget on hand-made histograms: one point per bin at the bin centre with the
// bin's count, log scale leaving empty bins out, exports (PNG/SVG/PDF signatures), and the
// engineering-notation labels of the count axis, overflow bars beyond the range; the Histograms tab's
// robust default range on a real model, the notebook preset and the log option. Expected values are
// computed by hand or by sorting the data.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "format.h"
#include "histogram_plot.h"
#include "histograms_tab.h"
#include "jobs/quantize_job.h"

using namespace qz::ui;

namespace {
QByteArray head(const QString& path, int n) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.read(n) : QByteArray();
}
}  // namespace

class TestHistogramPlot : public QObject {
    Q_OBJECT
private slots:
    void binsAndCounts() {
        // 10 bins over [0, 10): values 0.5 (x3), 2.2, 2.9, 9.99, 10 (goes to the last bin), -1 (below).
        qz::Histogram h(10, 0.0, 10.0);
        for (float v : {0.5f, 0.5f, 0.5f, 2.2f, 2.9f, 9.99f, 10.0f, -1.0f}) h.add(v);
        HistogramPlot plot;
        plot.setSeries({{QStringLiteral("a"), h, Qt::blue}});
        QCPGraph* g = plot.customPlot()->graph(0);
        QCOMPARE(g->data()->size(), 10);
        const double expected[10] = {3, 0, 2, 0, 0, 0, 0, 0, 0, 2};
        int i = 0;
        for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it, ++i) {
            QCOMPARE(it->key, i + 0.5);
            QCOMPARE(it->value, expected[i]);
        }
        QVERIFY(g->name().contains(QStringLiteral("outside range")));  // the -1
        // The -1 is an overflow bar one bin (width 1) left of the range, labelled with its count; the
        // view makes room for it (1.5 bins) on that side only.
        QCOMPARE(plot.overflowBars().size(), 1);
        QCOMPARE(plot.overflowBars()[0]->data()->size(), 1);
        QCOMPARE(plot.overflowBars()[0]->data()->constBegin()->key, -1.0);
        QCOMPARE(plot.overflowBars()[0]->data()->constBegin()->value, 1.0);
        QCOMPARE(plot.overflowLabels(), QStringList{QStringLiteral("1")});
        QCOMPARE(plot.customPlot()->xAxis->range().lower, -1.5);
        QCOMPARE(plot.customPlot()->xAxis->range().upper, 10.0);

        plot.setLogScale(true);
        g = plot.customPlot()->graph(0);
        int finite = 0;
        for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it) finite += std::isfinite(it->value);
        QCOMPARE(finite, 3);  // empty bins are left out on a log axis
        QCOMPARE(plot.customPlot()->yAxis->scaleType(), QCPAxis::stLogarithmic);
        plot.setLogScale(false);
        QCOMPARE(plot.customPlot()->yAxis->scaleType(), QCPAxis::stLinear);

        plot.clear();
        QCOMPARE(plot.customPlot()->graphCount(), 0);
    }

    void overflowBarsPerSeriesAndSide() {
        // 4 bins over [0, 1) (width 0.25); series a: 2 below, 3 above; series b: 5 above.
        qz::Histogram a(4, 0.0, 1.0), b(4, 0.0, 1.0);
        for (float v : {-1.f, -2.f, 0.1f, 2.f, 3.f, 4.f}) a.add(v);
        for (float v : {0.6f, 5.f, 5.f, 5.f, 5.f, 5.f}) b.add(v);
        HistogramPlot plot;
        plot.setSeries({{QStringLiteral("a"), a, Qt::blue}, {QStringLiteral("b"), b, Qt::red}});
        const QStringList labels{QStringLiteral("2"), QStringLiteral("3"), QStringLiteral("5")};
        QCOMPARE(plot.overflowLabels(), labels);
        QCOMPARE(plot.overflowBars().size(), 3);
        QCOMPARE(plot.overflowBars()[0]->data()->constBegin()->key, -0.25);  // a below
        QCOMPARE(plot.overflowBars()[1]->data()->constBegin()->key, 1.25);   // a above
        QCOMPARE(plot.overflowBars()[2]->data()->constBegin()->key, 1.5);    // b above, next slot
        QCOMPARE(plot.customPlot()->xAxis->range().lower, -0.375);
        QCOMPARE(plot.customPlot()->xAxis->range().upper, 1.625);
        QCOMPARE(plot.customPlot()->yAxis->range().upper, 5 * 1.05);  // the tallest bar stays in view
        QCOMPARE(plot.customPlot()->legend->itemCount(), 2);              // bars are not in the legend
        plot.clear();
        QVERIFY(plot.overflowBars().isEmpty());
        QCOMPARE(plot.customPlot()->plottableCount(), 0);
    }

    void modelPlotFollowsTheData() {
        // The whole-model histograms of a real (tiny) model with the default robust range: the view
        // spans the weights' 0.1 % .. 99.9 % percentiles (computed here by sorting), not (-2, 2).
        auto m = qz::openModel(QZ_RESOURCES_DIR "/demo/stories260K");
        QVERIFY(m.ok());
        qz::QuantizeParams params;
        params.spec.bits = 4;
        auto r = qz::runQuantize(**m, params, {});
        QVERIFY(r.ok());
        std::vector<float> all;
        for (const auto& t : r->tensors) {
            auto x = qz::readTensorF32(**m, (*m)->tensors[t.tensorIndex]);
            QVERIFY(x.ok());
            all.insert(all.end(), x->begin(), x->end());
        }
        std::sort(all.begin(), all.end());
        const size_t k = all.size() / 1000;
        const double qLo = all[k], qHi = all[all.size() - 1 - k];
        HistogramsTab tab;
        QCOMPARE(tab.rangeChoice(), HistogramsTab::RobustRange);
        QCOMPARE(int(tab.modelHistogramSpec().mode), int(qz::HistogramRangeMode::Robust));
        tab.showModel(r->modelOriginal, r->modelDequantized, QStringLiteral("absmax 4-bit"));
        const QCPRange x = tab.modelPlot()->customPlot()->xAxis->range();
        const double w = r->modelOriginal.binWidth(), span = qHi - qLo;
        QVERIFY2(x.lower <= qLo && x.lower >= qLo - 0.02 * span - 3 * w,
                 qPrintable(QStringLiteral("%1 vs %2").arg(x.lower).arg(qLo)));
        QVERIFY2(x.upper >= qHi && x.upper <= qHi + 0.02 * span + 3 * w,
                 qPrintable(QStringLiteral("%1 vs %2").arg(x.upper).arg(qHi)));
        // Values beyond the range are in overflow bars labelled with their counts.
        const double lo = r->modelOriginal.lo;
        const auto below = uint64_t(std::count_if(all.begin(), all.end(), [&](float v) { return v < lo; }));
        QVERIFY(below > 0);
        QVERIFY(tab.modelPlot()->overflowLabels().contains(formatEngineering(double(below))));
    }

    void notebookPresetAndLogOption() {
        HistogramsTab tab;
        tab.setRangeChoice(HistogramsTab::NotebookRange);
        const qz::HistogramSpec s = tab.modelHistogramSpec();
        QCOMPARE(int(s.mode), int(qz::HistogramRangeMode::Fixed));
        QCOMPARE(s.lo, -2.0);
        QCOMPARE(s.hi, 2.0);
        QCOMPARE(s.bins, 150);
        // The job run with it gives (-2, 2) bins, and so does the plot's x-range.
        auto m = qz::openModel(QZ_RESOURCES_DIR "/demo/stories260K");
        QVERIFY(m.ok());
        qz::QuantizeParams params;
        params.modelHistogram = s;
        auto r = qz::runQuantize(**m, params, {});
        QVERIFY(r.ok());
        QCOMPARE(r->modelOriginal.lo, -2.0);
        QCOMPARE(r->modelOriginal.hi, 2.0);
        QCOMPARE(r->modelOriginal.below + r->modelOriginal.above, uint64_t(0));  // tiny model: all inside
        tab.showModel(r->modelOriginal, r->modelDequantized, QStringLiteral("absmax 8-bit"));
        QCOMPARE(tab.modelPlot()->customPlot()->xAxis->range().lower, -2.0);
        QCOMPARE(tab.modelPlot()->customPlot()->xAxis->range().upper, 2.0);
        // A spec set from outside selects the matching choice.
        tab.setModelHistogramSpec(qz::HistogramSpec{});
        QCOMPARE(tab.rangeChoice(), HistogramsTab::RobustRange);
        qz::HistogramSpec custom = qz::HistogramSpec::notebookPreset();
        custom.lo = -1;
        tab.setModelHistogramSpec(custom);
        QCOMPARE(tab.rangeChoice(), HistogramsTab::CustomRange);
        QCOMPARE(tab.modelHistogramSpec().lo, -1.0);
        // Log counts: every plot's count axis becomes logarithmic.
        tab.setLogScale(true);
        for (HistogramPlot* p : {tab.tensorPlot(), tab.errorPlot(), tab.modelPlot()})
            QCOMPARE(p->customPlot()->yAxis->scaleType(), QCPAxis::stLogarithmic);
        tab.setLogScale(false);
        QCOMPARE(tab.modelPlot()->customPlot()->yAxis->scaleType(), QCPAxis::stLinear);
    }

    void exports() {
        qz::Histogram h(20, -1.0, 1.0);
        for (int i = 0; i < 1000; ++i) h.add(float(std::sin(i * 0.37)));
        HistogramPlot plot;
        plot.setTitle(QStringLiteral("export"));
        plot.setSeries({{QStringLiteral("sin"), h, HistogramPlot::originalColor()}});
        QTemporaryDir dir;
        QVERIFY(plot.exportTo(dir.filePath(QStringLiteral("p.png")), 400, 300));
        QCOMPARE(head(dir.filePath(QStringLiteral("p.png")), 8), QByteArray("\x89PNG\r\n\x1a\n", 8));
        QVERIFY(plot.exportTo(dir.filePath(QStringLiteral("p.svg")), 400, 300));
        QVERIFY(head(dir.filePath(QStringLiteral("p.svg")), 400).contains("<svg"));
        QVERIFY(plot.exportTo(dir.filePath(QStringLiteral("p.pdf")), 400, 300));
        QCOMPARE(head(dir.filePath(QStringLiteral("p.pdf")), 5), QByteArray("%PDF-"));
        QString error;
        QVERIFY(!plot.exportTo(dir.filePath(QStringLiteral("p.bmpx")), 400, 300, &error));
        QVERIFY(!error.isEmpty());
    }

    void engineeringNotation() {
        QCOMPARE(formatEngineering(1500), QStringLiteral("1.5k"));
        QCOMPARE(formatEngineering(25000), QStringLiteral("25k"));
        QCOMPARE(formatEngineering(2.5e6), QStringLiteral("2.5M"));
        QCOMPARE(formatEngineering(0.002), QStringLiteral("2m"));
        QCOMPARE(formatEngineering(750), QStringLiteral("750"));
        QCOMPARE(formatEngineering(0), QStringLiteral("0"));
        QCOMPARE(formatBytes(1536), QStringLiteral("1.50 KiB"));
        QCOMPARE(formatCount(260032), QStringLiteral("260.0 K"));
    }
};

QTEST_MAIN(TestHistogramPlot)
#include "test_histogram_plot.moc"

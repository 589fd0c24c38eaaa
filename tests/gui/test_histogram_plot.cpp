// The reusable plot widget on hand-made histograms: one point per bin at the bin centre with the
// bin's count, log scale leaving empty bins out, exports (PNG/SVG/PDF signatures), and the
// engineering-notation labels of the count axis. Expected values are computed by hand.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>
#include <qcustomplot.h>

#include "format.h"
#include "histogram_plot.h"

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
        QCOMPARE(plot.customPlot()->xAxis->range().lower, 0.0);
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

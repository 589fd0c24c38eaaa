// The first screen a newcomer sees, on a 1600×1000 screen (the offscreen platform configured with one
// such screen): the main window fits the available geometry, its minimum size fits 1280×800, a remembered
// geometry that no longer fits is corrected, empty plots show no meaningless scale, and opening the demo
// model shows its first weight matrix's histogram straight away. Expected values come from the demo
// model's safetensors header: model.embed_tokens.weight is the first tensor, [512, 64].
#include <QApplication>
#include <QDir>
#include <QFile>
#include <QScreen>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <qcustomplot.h>

#include "histogram_plot.h"
#include "histograms_tab.h"
#include "main_window.h"
#include "method_panel.h"
#include "model/model.h"
#include "model_histogram_job.h"
#include "model_tree.h"

using namespace qz::ui;

namespace {
const QString kDemo = QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K");
const QString kFirst = QStringLiteral("model.embed_tokens.weight");
constexpr double kFirstNumel = 512.0 * 64.0;
const QSize kScreen(1600, 1000);

double graphSum(QCPGraph* g) {
    double s = 0;
    for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it)
        s += it->value;
    return s;
}

QString rectText(const QRect& r) {
    return QStringLiteral("%1x%2+%3+%4").arg(r.width()).arg(r.height()).arg(r.x()).arg(r.y());
}
} // namespace

class TestFirstScreen : public QObject {
    Q_OBJECT
  private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTestFirstScreen"));
        QCOMPARE(QGuiApplication::primaryScreen()->availableGeometry().size(), kScreen);
    }
    void init() { QSettings().clear(); }

    void firstSizeFitsTheScreen() {
        MainWindow w;
        // The window's minimum (its layout's) fits a 1280×800 screen.
        QVERIFY2(w.minimumSizeHint().width() <= 1280 && w.minimumSizeHint().height() <= 800,
                 qPrintable(QStringLiteral("minimum size hint %1x%2")
                                .arg(w.minimumSizeHint().width())
                                .arg(w.minimumSizeHint().height())));
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        const QRect avail = w.screen()->availableGeometry();
        QVERIFY2(avail.contains(w.frameGeometry()), qPrintable(rectText(w.frameGeometry())));
        // Not shrunk to nothing: the workspace uses most of the screen.
        QVERIFY2(w.width() >= 1280 && w.height() >= 800, qPrintable(rectText(w.geometry())));
        // The method panel (right of the workspace) is inside the window, not off to the right.
        QWidget* run = w.methodPanel()->runButton();
        const QRect r(run->mapTo(&w, QPoint(0, 0)), run->size());
        QVERIFY2(w.rect().contains(r), qPrintable(rectText(r)));
        // The Histograms workspace (what the window opens on) fits its place without scrolling.
        auto* scroll = w.findChild<QAbstractScrollArea*>(QStringLiteral("histogramsWorkspaceScroll"));
        QVERIFY(scroll);
        QTest::qWait(50); // layouts settle
        QVERIFY(!scroll->horizontalScrollBar()->isVisible());
        QVERIFY(!scroll->verticalScrollBar()->isVisible());
    }

    void rememberedGeometryIsRestored() {
        {
            MainWindow w;
            w.show();
            QVERIFY(QTest::qWaitForWindowExposed(&w));
            w.resize(1400, 850);
            w.close(); // saves the geometry
        }
        MainWindow w;
        QCOMPARE(w.size(), QSize(1400, 850));
    }

    void rememberedGeometryTooLargeIsCorrected() {
        {
            MainWindow w;
            w.show();
            QVERIFY(QTest::qWaitForWindowExposed(&w));
            w.setGeometry(700, 500, 2400, 1500); // as on a larger screen that is gone now
            w.close();
        }
        MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY2(w.screen()->availableGeometry().contains(w.frameGeometry()),
                 qPrintable(rectText(w.frameGeometry())));
    }

    void emptyPlotsShowNoScale() {
        MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        for (HistogramPlot* p :
             {w.histograms()->tensorPlot(), w.histograms()->errorPlot(), w.histograms()->modelPlot()}) {
            QCustomPlot* cp = p->customPlot();
            QCOMPARE(cp->graphCount(), 0);
            cp->replot();
            for (QCPAxis* axis : {cp->xAxis, cp->yAxis}) {
                QVERIFY(!axis->tickLabels());
                QVERIFY(!axis->ticks());
            }
            // A caption says what to do instead.
            auto* title = qobject_cast<QCPTextElement*>(cp->plotLayout()->element(0, 0));
            QVERIFY(title);
            QVERIFY(!title->text().isEmpty());
        }
    }

    void openingTheDemoShowsTheFirstTensor() {
        MainWindow w;
        w.show();
        QSignalSpy opened(&w, &MainWindow::modelOpened);
        QSignalSpy shown(&w, &MainWindow::tensorShown);
        w.openPath(kDemo);
        QVERIFY(opened.wait(30000));
        QVERIFY(shown.count() > 0 || shown.wait(30000));
        QCOMPARE(shown.first().first().toString(), kFirst);
        QCOMPARE(w.histograms()->tensorName(), kFirst);
        QTreeWidgetItem* current = w.modelTree()->currentItem();
        QVERIFY(current);
        QCOMPARE(current->text(ModelTree::ColName), kFirst);
        // Its histogram has data: every value of the [512, 64] tensor counted once (in the range or beyond
        // it), with a scale.
        QCustomPlot* tp = w.histograms()->tensorPlot()->customPlot();
        QVERIFY(tp->graphCount() >= 1);
        const auto& hist = w.histograms()->tensorPlot()->series().at(0).histogram;
        QCOMPARE(graphSum(tp->graph(0)) + double(hist.below + hist.above), kFirstNumel);
        QVERIFY(graphSum(tp->graph(0)) > 0.99 * kFirstNumel);  // the range spans the bulk
        QVERIFY(tp->yAxis->tickLabels());
        QVERIFY(tp->xAxis->tickLabels());
    }

    // Before any run, the whole model's original weights are counted on a worker after opening and shown
    // in the model plot: every value of every 2-D weight (from the file's own header), in range or beyond.
    void openingStreamsTheModelHistogram() {
        MainWindow w;
        w.show();
        QSignalSpy ready(w.modelHistogramJob(), &ModelHistogramJob::ready);
        QSignalSpy progress(w.modelHistogramJob(), &ModelHistogramJob::progress);
        w.openPath(kDemo);
        QVERIFY(ready.wait(60000));
        QVERIFY(progress.count() > 0);
        auto m = qz::openModel(kDemo.toStdString());
        QVERIFY(m);
        double want = 0;
        for (const auto& t : (*m)->tensors)
            if (t.shape.size() == 2) want += double(t.numel());
        const auto& series = w.histograms()->modelPlot()->series();
        QCOMPARE(series.size(), 1);
        const auto& h = series.at(0).histogram;
        QCOMPARE(double(h.total()), want);
        QVERIFY(double(h.below + h.above) < 0.01 * want);  // the robust range holds the bulk
    }
};

// One 1600×1000 screen for the offscreen platform (its configfile option), set before QApplication.
int main(int argc, char** argv) {
    QTemporaryDir dir;
    const QString config = dir.filePath(QStringLiteral("screen.json"));
    QFile f(config);
    if (!f.open(QIODevice::WriteOnly) ||
        f.write(
            QStringLiteral("{\"screens\": [{\"name\": \"qz-1600x1000\", \"x\": 0, \"y\": 0, \"width\": %1, "
                           "\"height\": %2, \"logicalDpi\": 96, \"logicalBaseDpi\": 96, \"dpr\": 1}]}")
                .arg(kScreen.width())
                .arg(kScreen.height())
                .toUtf8()) < 0)
        return 1;
    f.close();
    qputenv("QT_QPA_PLATFORM", (QStringLiteral("offscreen:configfile=") + config).toLocal8Bit());
    QApplication app(argc, argv);
    TestFirstScreen t;
    QTEST_SET_MAIN_SOURCE_PATH
    return QTest::qExec(&t, argc, argv);
}

#include "test_first_screen.moc"

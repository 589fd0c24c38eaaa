// The Compare workspace, offscreen: variants added by method spec and from llama.cpp's own GGUF files
// (tests/data/golden), the side-by-side table equal to the core's figures (and, for absmax 8-bit, to a
// hand computation), small-multiple histograms on shared axes, an evaluation whose scatter shows one
// point per variant with the Pareto front, a click on a point selecting its variant, every figure and
// table exported, and the project file reopened into a fresh workspace with the same table.
#include <QCheckBox>
#include <QFile>
#include <QListWidget>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>
#include <qcustomplot.h>

#include "compare_workspace.h"
#include "histogram_plot.h"
#include "main_window.h"
#include "method_panel.h"
#include "workspace_tabs.h"

using namespace qz::ui;

namespace {
const char* kHf = QZ_TEST_DATA "/models/stories260K/hf";
const char* kQ4 = QZ_TEST_DATA "/golden/stories260K/stories260K-Q4_K_M.gguf";
const char* kQ2 = QZ_TEST_DATA "/golden/stories260K/stories260K-Q2_K.gguf";
const char* kTensor = "model.layers.1.mlp.down_proj.weight";

ModelPtr open(const char* path) {
    auto m = qz::openModel(path);
    return m.ok() ? ModelPtr(*m) : nullptr;
}

double value(QTableWidget* t, int row, int col) {
    auto* it = t->item(row, col);
    if (!it) return std::nan("");
    bool ok = false;
    const double v = it->data(Qt::UserRole).toDouble(&ok);
    return ok ? v : std::nan("");
}

int rowOf(QTableWidget* t, int variantIndex) {
    for (int r = 0; r < t->rowCount(); ++r)
        if (t->item(r, CompareWorkspace::ColVariant)->data(Qt::UserRole).toInt() == variantIndex) return r;
    return -1;
}

bool waitIdle(CompareWorkspace& w) {
    if (!w.runner()->isRunning()) return true;
    QSignalSpy spy(&w, &CompareWorkspace::jobFinished);
    return spy.wait(240000);
}
} // namespace

class TestCompareWorkspace : public QObject {
    Q_OBJECT
  private slots:
    void compareEvaluateClickSave();
    void mainWindowKeepsEveryRun();
};

void TestCompareWorkspace::compareEvaluateClickSave() {
    CompareWorkspace w;
    w.resize(1400, 900);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    auto model = open(kHf);
    QVERIFY(model);
    w.setModel(model);
    w.setContext(64);
    w.setChunks(4);

    QString err;
    QVERIFY(!w.addMethod(QStringLiteral("absmax:11"), &err));
    QVERIFY(err.contains(QStringLiteral("absmax:11")));
    QVERIFY(w.addMethod(QStringLiteral("absmax:8:tensor")));
    QVERIFY(waitIdle(w));
    QVERIFY(w.addMethod(QStringLiteral("zeropoint:4:group:32")));
    QVERIFY(waitIdle(w));
    QVERIFY(w.addFile(QString::fromUtf8(kQ4)));
    QVERIFY(waitIdle(w));
    QVERIFY(w.addFile(QString::fromUtf8(kQ2)));
    QVERIFY(waitIdle(w));
    QCOMPARE(w.variantCount(), 4);
    QCOMPARE(w.variant(2).label, std::string("Q4_K_M"));
    QCOMPARE(w.selected(), (QList<int>{0, 1, 2, 3}));

    // The table: one row per ticked variant, the tensor's figures equal to the core's.
    QSignalSpy shown(&w, &CompareWorkspace::histogramsShown);
    w.setTensor(QString::fromUtf8(kTensor));
    QVERIFY(shown.wait(120000));
    QTableWidget* t = w.table();
    QCOMPARE(t->rowCount(), 4);
    for (int i = 0; i < 4; ++i) {
        const int r = rowOf(t, i);
        QVERIFY(r >= 0);
        const qz::VariantTensor* vt = w.variant(i).find(kTensor);
        QVERIFY(vt);
        QCOMPARE(value(t, r, CompareWorkspace::ColMse), vt->error.mse);
        QCOMPARE(value(t, r, CompareWorkspace::ColSqnr), vt->error.sqnrDb);
        QCOMPARE(value(t, r, CompareWorkspace::ColBpw), vt->bitsPerWeight);
        QCOMPARE(t->item(r, CompareWorkspace::ColMse)->text(), QString::number(vt->error.mse, 'e', 4));
    }
    // absmax 8-bit per tensor by hand: s = 127 / max|x|, x' = round(s·x) / s.
    {
        auto x = qz::readTensorF32(*model, *model->find(kTensor));
        QVERIFY(x);
        float amax = 0;
        for (float f : *x)
            amax = std::max(amax, std::fabs(f));
        const float s = 127.0f / amax;
        double se = 0;
        for (float f : *x) {
            const double d = double(std::nearbyint(s * f) / s) - double(f);
            se += d * d;
        }
        const double mse = value(t, rowOf(t, 0), CompareWorkspace::ColMse);
        QVERIFY2(std::fabs(mse - se / double(x->size())) <= 1e-9 * mse, qPrintable(QString::number(mse)));
    }
    // Small multiples: one plot per variant on the same axes; the errors overlaid on shared bins.
    QCOMPARE(w.histogramPlots().size(), 4);
    const QCPRange x0 = w.histogramPlots()[0]->customPlot()->xAxis->range();
    const QCPRange y0 = w.histogramPlots()[0]->customPlot()->yAxis->range();
    for (HistogramPlot* p : w.histogramPlots()) {
        QCOMPARE(p->customPlot()->xAxis->range().lower, x0.lower);
        QCOMPARE(p->customPlot()->xAxis->range().upper, x0.upper);
        QCOMPARE(p->customPlot()->yAxis->range().upper, y0.upper);
        QCOMPARE(p->series().size(), 2);
        QCOMPARE(p->series()[0].histogram.total(), model->find(kTensor)->numel());
        QCOMPARE(p->series()[1].histogram.total(), model->find(kTensor)->numel());
    }
    QCOMPARE(w.errorPlot()->series().size(), 4);
    w.setOverlay(true);
    QVERIFY(shown.wait(120000));
    QCOMPARE(w.histogramPlots().size(), 1);
    QCOMPARE(w.histogramPlots()[0]->series().size(), 5); // original + 4
    // The per-layer chart: one line per variant, one point per decoder layer (stories260K: 5).
    QCOMPARE(w.layerPlot()->graphCount(), 4);
    for (int g = 0; g < 4; ++g)
        QCOMPARE(w.layerPlot()->graph(g)->dataCount(), 5);

    // Evaluate: PPL / KLD per variant, one scatter point each, the Pareto front drawn.
    QSignalSpy evaluated(&w, &CompareWorkspace::evaluationFinished);
    QVERIFY(w.evaluate());
    QVERIFY(evaluated.wait(300000));
    QVERIFY(w.comparison().originalEval && w.comparison().originalEval->done);
    for (int i = 0; i < 4; ++i) {
        const auto& e = w.variant(i).eval;
        QVERIFY2(e.done, e.error.c_str());
        QVERIFY(e.meanKld > 0 && std::isfinite(e.ppl));
        QCOMPARE(value(t, rowOf(t, i), CompareWorkspace::ColKld), e.meanKld);
        QCOMPARE(value(t, rowOf(t, i), CompareWorkspace::ColPpl), e.ppl);
    }
    // Lower bits cost more: the 8-bit absmax variant is closer to the original than Q2_K.
    QVERIFY(w.variant(0).eval.meanKld < w.variant(3).eval.meanKld);
    int points = 0, fronts = 0;
    for (int g = 0; g < w.scatter()->graphCount(); ++g) {
        if (w.scatter()->graph(g)->property("variant").isValid())
            ++points;
        else
            ++fronts;
    }
    QCOMPARE(points, 4);
    QCOMPARE(fronts, 1);
    bool mixLabelled = false;
    for (int k = 0; k < w.scatter()->itemCount(); ++k)
        if (auto* label = qobject_cast<QCPItemText*>(w.scatter()->item(k)))
            mixLabelled |= label->text() == QLatin1String("Q4_K_M");
    QVERIFY(mixLabelled);

    // Clicking a point selects its variant.
    w.views()->setCurrentIndex(3);
    w.scatter()->replot();
    QCoreApplication::processEvents();
    QSignalSpy current(&w, &CompareWorkspace::currentVariantChanged);
    for (int target : {3, 1}) {
        const auto pt = w.scatterPoint(target);
        QVERIFY(pt);
        QTest::mouseClick(w.scatter(), Qt::LeftButton, Qt::NoModifier, pt->toPoint());
        QCOMPARE(w.currentVariant(), target);
        QCOMPARE(w.variantList()->currentRow(), target);
        QCOMPARE(t->currentRow(), rowOf(t, target));
    }
    QCOMPARE(current.count(), 2);

    // Exports: every figure as PNG / SVG / PDF, every table as CSV.
    QTemporaryDir dir;
    for (const QString& id : {QStringLiteral("histograms"), QStringLiteral("errors"),
                              QStringLiteral("layers"), QStringLiteral("scatter")})
        for (const QString& ext : {QStringLiteral("png"), QStringLiteral("svg"), QStringLiteral("pdf")}) {
            const QString p = dir.filePath(id + QStringLiteral(".") + ext);
            QVERIFY2(w.exportFigure(id, p, &err), qPrintable(id + QStringLiteral(": ") + err));
            QVERIFY(QFileInfo(p).size() > 1000);
        }
    QVERIFY(!w.exportFigure(QStringLiteral("scatter"), dir.filePath(QStringLiteral("x.bmp")), &err));
    QVERIFY(w.exportTable(QStringLiteral("tensor"), dir.filePath(QStringLiteral("tensor.csv")), &err));
    QVERIFY(w.exportTable(QStringLiteral("variants"), dir.filePath(QStringLiteral("variants.csv")), &err));
    QFile csv(dir.filePath(QStringLiteral("tensor.csv")));
    QVERIFY(csv.open(QIODevice::ReadOnly));
    QCOMPARE(csv.readAll().count('\n'), 5); // header + 4 variants

    // The project file round trip: a fresh workspace on the same model shows the same table.
    w.setSelected({0, 2, 3});
    const QString project = dir.filePath(QStringLiteral("c.json"));
    QVERIFY2(w.saveProject(project, &err), qPrintable(err));
    CompareWorkspace w2;
    w2.show();
    QSignalSpy requested(&w2, &CompareWorkspace::modelRequested);
    QVERIFY(w2.openProject(project, &err));
    QCOMPARE(requested.count(), 1); // no model open yet: the workspace asks for it
    QCOMPARE(requested.first().first().toString(), QString::fromStdString(model->path));
    QSignalSpy shown2(&w2, &CompareWorkspace::histogramsShown);
    w2.setModel(open(kHf));
    QCOMPARE(w2.variantCount(), 4);
    QCOMPARE(w2.selected(), (QList<int>{0, 2, 3}));
    QCOMPARE(w2.tensor(), QString::fromUtf8(kTensor));
    QCOMPARE(w2.table()->rowCount(), 3);
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < CompareWorkspace::ColCount; ++c)
            QCOMPARE(w2.table()->item(r, c)->text(), t->item(rowOf(t, w.selected()[r]), c)->text());
    QVERIFY(shown2.wait(120000)); // the fake-quantized variant's values are re-made from its spec
    QCOMPARE(w2.histogramPlots().size(), 3);
    QVERIFY(!w2.openProject(dir.filePath(QStringLiteral("tensor.csv")), &err));
    QVERIFY(err.contains(QStringLiteral("tensor.csv")));

    // llama.cpp's standard mixes exported into a folder and added, labelled by their type.
    QVERIFY(w2.addStandardMixes(dir.path(), {QStringLiteral("Q8_0"), QStringLiteral("Q4_K_M")}));
    QVERIFY(waitIdle(w2));
    QCOMPARE(w2.variantCount(), 6);
    QCOMPARE(w2.variant(4).label, std::string("Q8_0"));
    QCOMPARE(w2.variant(5).label, std::string("Q4_K_M"));
    QVERIFY(QFileInfo::exists(dir.filePath(QStringLiteral("hf.Q4_K_M.gguf"))));
    QCOMPARE(w2.variant(5).path, dir.filePath(QStringLiteral("hf.Q4_K_M.gguf")).toStdString());
}

// Running absmax after zero-point no longer replaces the first result: both are variants in Compare.
void TestCompareWorkspace::mainWindowKeepsEveryRun() {
    QStandardPaths::setTestModeEnabled(true);
    MainWindow w;
    w.show();
    QVERIFY(w.workspaces()->workspace(QStringLiteral("compare")) == w.compareWorkspace());
    QSignalSpy opened(&w, &MainWindow::modelOpened);
    w.openPath(QString::fromUtf8(kHf));
    QVERIFY(opened.wait(30000));
    QSignalSpy finished(&w, &MainWindow::runFinished);
    qz::QuantSpec zp;
    zp.method = qz::QuantMethod::ZeroPoint;
    zp.bits = 4;
    w.methodPanel()->setSpec(zp);
    QVERIFY(w.startRun());
    QVERIFY(finished.wait(120000));
    qz::QuantSpec ab;
    ab.bits = 8;
    w.methodPanel()->setSpec(ab);
    QVERIFY(w.startRun());
    QVERIFY(finished.wait(120000));
    CompareWorkspace* c = w.compareWorkspace();
    QCOMPARE(c->variantCount(), 2);
    QCOMPARE(c->variant(0).spec.method, qz::QuantMethod::ZeroPoint);
    QCOMPARE(c->variant(1).spec.method, qz::QuantMethod::Absmax);
    // The figures are the run's own.
    for (const auto& t : w.result()->tensors) {
        const qz::VariantTensor* vt = c->variant(1).find(t.name);
        QVERIFY(vt);
        QCOMPARE(vt->error.mse, t.error.mse);
    }
}

QTEST_MAIN(TestCompareWorkspace)
#include "test_compare_workspace.moc"

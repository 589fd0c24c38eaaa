// Opens the demo model in the real window, runs absmax 8-bit per tensor and checks what the user
// sees: tree, histogram plots (bins, counts = tensor sizes), the error table and the summary.
// Expected sizes come from the demo model's safetensors header (47 tensors, 36 of them 2-D,
// 259,328 parameters in 2-D tensors) and from the absmax formulas (max error <= max|X| / 254).
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTableView>
#include <QTest>
#include <cmath>
#include <qcustomplot.h>

#include "histogram_plot.h"
#include "histograms_tab.h"
#include "main_window.h"
#include "method_panel.h"
#include "model_tree.h"
#include "result_summary.h"
#include "tensor_table.h"
#include "tensor_table_model.h"

using namespace qz::ui;

namespace {
const QString kDemo = QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K");
const QString kDown = QStringLiteral("model.layers.0.mlp.down_proj.weight");  // [64, 172]
constexpr double kDownNumel = 64.0 * 172.0;
constexpr int k2DTensors = 36;
constexpr double k2DParams = 512.0 * 64 + 5 * (64.0 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64);

double graphSum(QCPGraph* g) {
    double s = 0;
    for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it) s += it->value;
    return s;
}
}  // namespace

class TestMainWindow : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTest"));
    }

    void quantizeAndPlot() {
        MainWindow w;
        w.show();
        QSignalSpy opened(&w, &MainWindow::modelOpened);
        w.openPath(kDemo);
        QVERIFY(opened.wait(30000));
        QCOMPARE(w.modelTree()->tensorCount(), 47);
        QCOMPARE(w.modelTree()->topLevelItemCount(), 6);  // outside layers + 5 layers
        QTreeWidgetItem* item = w.modelTree()->itemForTensor(kDown);
        QVERIFY(item);
        QCOMPARE(item->text(ModelTree::ColShape), QStringLiteral("[64, 172]"));
        QCOMPARE(item->text(ModelTree::ColDType), QStringLiteral("F32"));

        // Select the tensor in the tree, then run absmax 8-bit per tensor on all 2-D weights.
        w.modelTree()->setCurrentItem(item);
        QCOMPARE(w.methodPanel()->spec().method, qz::QuantMethod::Absmax);
        QCOMPARE(w.methodPanel()->spec().bits, 8);
        QCOMPARE(w.methodPanel()->spec().granularity, qz::Granularity::Tensor);
        QCOMPARE(w.methodPanel()->selectionMode(), qz::TensorSelection::All2D);
        QSignalSpy finished(&w, &MainWindow::runFinished);
        QVERIFY(w.methodPanel()->runButton()->isEnabled());
        QTest::mouseClick(w.methodPanel()->runButton(), Qt::LeftButton);
        QVERIFY(finished.wait(120000));

        // Tensor plot: original and dequantized, 150 bins each over the 0.1 % .. 99.9 % range, all values
        // counted (at most 0.1 % of them beyond each edge, in the overflow bars).
        QCustomPlot* tp = w.histograms()->tensorPlot()->customPlot();
        QCOMPARE(tp->graphCount(), 2);
        QCOMPARE(w.histograms()->tensorName(), kDown);
        for (int g = 0; g < 2; ++g) QCOMPARE(tp->graph(g)->data()->size(), 150);
        const auto& origHist = w.histograms()->tensorPlot()->series().at(0).histogram;
        QCOMPARE(graphSum(tp->graph(0)) + double(origHist.below + origHist.above), kDownNumel);
        QVERIFY(origHist.below <= 11 && origHist.above <= 11);  // floor(0.001 * 11008) each
        const auto& deqHist = w.histograms()->tensorPlot()->series().at(1).histogram;
        QCOMPARE(graphSum(tp->graph(1)) + double(deqHist.below + deqHist.above), kDownNumel);
        QVERIFY(graphSum(tp->graph(1)) > 0.9 * kDownNumel);
        // Error plot: one series, symmetric around 0, at most 0.1 % of |err| beyond it.
        QCustomPlot* ep = w.histograms()->errorPlot()->customPlot();
        QCOMPARE(ep->graphCount(), 1);
        QCOMPARE(ep->graph(0)->data()->size(), 150);
        const auto& errHist = w.histograms()->errorPlot()->series().at(0).histogram;
        QCOMPARE(errHist.lo, -errHist.hi);
        QCOMPARE(graphSum(ep->graph(0)) + double(errHist.below + errHist.above), kDownNumel);
        QVERIFY(errHist.below + errHist.above <= 11);
        // Whole model: 150 bins over the weights' 0.1 % .. 99.9 % range (narrower than the notebook's
        // (-2, 2)), both series, every weight counted.
        QCustomPlot* mp = w.histograms()->modelPlot()->customPlot();
        QCOMPARE(mp->graphCount(), 2);
        QCOMPARE(mp->graph(0)->data()->size(), 150);
        QCOMPARE(mp->graph(1)->data()->size(), 150);
        const auto& mh = w.histograms()->modelPlot()->series().at(0).histogram;
        QVERIFY(mh.lo > -2.0 && mh.hi < 2.0);
        QVERIFY(std::fabs(mp->graph(0)->data()->constBegin()->key - (mh.lo + (mh.hi - mh.lo) / 300)) < 1e-9);
        QCOMPARE(graphSum(mp->graph(0)) + double(mh.below + mh.above), k2DParams);
        QVERIFY(mh.below + mh.above <= 2 * uint64_t(k2DParams / 1000));

        // Table: one row per 2-D tensor, finite figures, absmax bound on the max error.
        TensorTableModel* tm = w.tensorTable()->model();
        QCOMPARE(tm->rowCount(), k2DTensors);
        for (int r = 0; r < tm->rowCount(); ++r) {
            const auto& res = tm->result(r);
            for (int c : {TensorTableModel::Mse, TensorTableModel::MaxAbs, TensorTableModel::Cosine,
                          TensorTableModel::Bpw}) {
                const double v = tm->data(tm->index(r, c), TensorTableModel::SortRole).toDouble();
                QVERIFY2(std::isfinite(v), qPrintable(QString::fromStdString(res.name)));
            }
            QVERIFY(res.error.mse > 0);
            QVERIFY(res.error.cosine > 0.999 && res.error.cosine <= 1.0 + 1e-12);
            const double maxAbsX = std::max(std::fabs(res.range.min), std::fabs(res.range.max));
            QVERIFY(res.error.maxAbs <= maxAbsX / 254.0 * (1 + 1e-5));
        }
        // 8-bit codes for 11008 values + one F32 scale for the tensor.
        const auto* down = tm->find(kDown);
        QVERIFY(down);
        QCOMPARE(down->bytesBefore, quint64(kDownNumel * 4));
        QCOMPARE(down->bytesAfter, quint64(kDownNumel + 4));
        QVERIFY(w.tensorTable()->summary()->text().contains(QStringLiteral("bits per weight")));
        QVERIFY(w.exportAction()->isEnabled());
        QVERIFY(w.statusText().startsWith(QStringLiteral("Done")));

        // Clicking a table row moves the plots to that tensor.
        QSignalSpy shown(&w, &MainWindow::tensorShown);
        QTableView* view = w.tensorTable()->view();
        int row = -1;
        for (int r = 0; r < view->model()->rowCount(); ++r)
            if (view->model()->index(r, 0).data().toString() == QStringLiteral("model.embed_tokens.weight")) row = r;
        QVERIFY(row >= 0);
        view->scrollTo(view->model()->index(row, 0));
        const QRect rect = view->visualRect(view->model()->index(row, 0));
        QTest::mouseClick(view->viewport(), Qt::LeftButton, {}, rect.center());
        QVERIFY(shown.count() > 0 || shown.wait(10000));
        QCOMPARE(w.histograms()->tensorName(), QStringLiteral("model.embed_tokens.weight"));
        const auto& embHist = w.histograms()->tensorPlot()->series().at(0).histogram;
        QCOMPARE(graphSum(tp->graph(0)) + double(embHist.below + embHist.above), 512.0 * 64.0);
        QCOMPARE(w.modelTree()->currentItem()->text(0), QStringLiteral("model.embed_tokens.weight"));
    }

    void treeSelectionAndBins() {
        MainWindow w;
        w.show();
        QSignalSpy opened(&w, &MainWindow::modelOpened);
        w.openPath(kDemo);
        QVERIFY(opened.wait(30000));
        // Three tensors picked in the tree, zero-point 4-bit per group of 32, 64 tensor bins.
        const QStringList picked = {kDown, QStringLiteral("model.layers.3.self_attn.k_proj.weight"),
                                    QStringLiteral("model.norm.weight")};
        w.modelTree()->selectTensors(picked);
        QCOMPARE(w.modelTree()->selectedTensorNames().size(), 3);
        w.methodPanel()->setSelectionMode(qz::TensorSelection::Names);
        qz::QuantSpec spec;
        spec.method = qz::QuantMethod::ZeroPoint;
        spec.bits = 4;
        spec.granularity = qz::Granularity::Group;
        spec.groupSize = 32;
        w.methodPanel()->setSpec(spec);
        QCOMPARE(w.methodPanel()->spec().groupSize, 32);
        w.histograms()->setTensorBins(64);
        QSignalSpy finished(&w, &MainWindow::runFinished);
        QVERIFY(w.startRun());
        QVERIFY(finished.wait(60000));
        QCOMPARE(w.tensorTable()->model()->rowCount(), 3);
        QCOMPARE(w.result()->tensors.size(), size_t(3));
        QCOMPARE(w.histograms()->tensorPlot()->customPlot()->graph(0)->data()->size(), 64);

        // An invalid regex disables Run and says why; a valid one enables it again.
        w.methodPanel()->setSelectionMode(qz::TensorSelection::Regex);
        w.methodPanel()->setRegex(QStringLiteral("mlp.(up"));
        QVERIFY(!w.methodPanel()->runButton()->isEnabled());
        QVERIFY(w.methodPanel()->validationError().contains(QStringLiteral("invalid")));
        w.methodPanel()->setRegex(QStringLiteral("mlp\\.(up|gate)_proj"));
        QVERIFY(w.methodPanel()->runButton()->isEnabled());
        QVERIFY(w.startRun());
        QVERIFY(finished.wait(60000));
        QCOMPARE(w.tensorTable()->model()->rowCount(), 10);  // up and gate in 5 layers
    }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"

// The export page's "Target size" tab, offscreen: measuring runs in the background and draws the
// target-size curve with the standard mixes as labelled points; a target size gives a plan that fits
// it; "Use for export" puts the plan's types into the export page's plan, which then plans a file of
// exactly the predicted size.
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <fstream>
#include <qcustomplot.h>
#include <sstream>

#include "export_panel.h"
#include "infer/imatrix_collect.h"
#include "target_size_view.h"

using namespace qz::ui;

class TestTargetSizeView : public QObject {
    Q_OBJECT
  private slots:
    void measureChooseApply();
};

void TestTargetSizeView::measureChooseApply() {
    auto m = qz::openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    ModelPtr model(*m);
    QTemporaryDir dir;
    std::ifstream f(QZ_TEST_DATA "/text/shakespeare-train.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    qz::ImatrixParams ip;
    ip.nCtx = 128;
    ip.nChunks = 16;
    ip.processOutput = true;
    auto im = qz::computeImatrix(*model, ss.str(), ip);
    QVERIFY(im.ok());
    const QString imPath = dir.filePath(QStringLiteral("imatrix.gguf"));
    QVERIFY(qz::writeImatrixGguf(*im, imPath.toStdString()).ok());

    ExportPanel panel;
    panel.show();
    QSignalSpy planned(&panel, &ExportPanel::planShown);
    panel.setModel(model);
    QVERIFY(planned.wait(20000));
    TargetSizeView* view = panel.targetView();
    QVERIFY(view);

    // Without an importance matrix or a text, nothing starts.
    QTest::mouseClick(view->measureButton(), Qt::LeftButton);
    QVERIFY(!view->measurer()->isRunning());
    QVERIFY(view->summary()->text().contains(QStringLiteral("importance matrix")));

    // The export page's importance matrix field.
    QLineEdit* imEdit = nullptr;
    for (auto* e : panel.findChildren<QLineEdit*>())
        if (e->placeholderText().contains(QStringLiteral("llama-imatrix"))) imEdit = e;
    QVERIFY(imEdit);
    imEdit->setText(imPath);

    QSignalSpy measured(view, &TargetSizeView::measured);
    QSignalSpy viewPlanned(view, &TargetSizeView::planShown);
    QTest::mouseClick(view->measureButton(), Qt::LeftButton);
    QVERIFY(view->measurer()->isRunning()); // in the background: the UI thread returned at once
    QVERIFY(measured.wait(300000));
    auto meas = view->measurement();
    QVERIFY(meas);
    QCOMPARE(int(meas->table.tensors.size()), 39);
    // The plot: the curve, the standard mixes (labelled), later the plan.
    QVERIFY(view->plot()->graphCount() >= 2);
    QVERIFY(view->plot()->graph(0)->dataCount() > 10);
    QVERIFY(view->plot()->graph(1)->dataCount() >= 10);
    bool labelled = false;
    for (int i = 0; i < view->plot()->itemCount(); ++i)
        if (auto* t = qobject_cast<QCPItemText*>(view->plot()->item(i));
            t && t->text() == QStringLiteral("Q4_K_M"))
            labelled = true;
    QVERIFY(labelled);

    // It starts at the size of Q4_K_M and plans within it.
    QVERIFY(viewPlanned.wait(30000));
    uint64_t q4km = 0;
    double q4kmLoss = 0;
    for (const auto& p : meas->mixes)
        if (p.name == "Q4_K_M") q4km = p.fileBytes, q4kmLoss = p.predictedLoss;
    QVERIFY(q4km > 0);
    auto plan = view->currentPlan();
    QVERIFY(plan);
    QVERIFY(plan->fileBytes <= q4km);
    QVERIFY(plan->predictedLoss < q4kmLoss);
    QCOMPARE(view->table()->rowCount(), 30); // the quantizable tensors
    QCOMPARE(view->plot()->graphCount(), 3);

    // The slider moves the target: a smaller file.
    viewPlanned.clear();
    view->slider()->setValue(100);
    QVERIFY(viewPlanned.wait(30000));
    QVERIFY(view->currentPlan()->fileBytes < q4km);
    QVERIFY(view->currentPlan()->fileBytes <=
            static_cast<uint64_t>(view->sizeBox()->value() * 1048576.0) + 1);

    // Use for export: the export page plans the same types and the same size.
    plan = view->currentPlan();
    planned.clear();
    QVERIFY(view->applyButton()->isEnabled());
    QTest::mouseClick(view->applyButton(), Qt::LeftButton);
    QVERIFY(planned.wait(20000));
    QTableWidget* t = panel.planTable();
    int checked = 0;
    for (int r = 0; r < t->rowCount(); ++r)
        for (const auto& c : plan->tensors)
            if (c.chosen && t->item(r, 1)->text().toStdString() == c.name) {
                QCOMPARE(t->item(r, 3)->text().toStdString(), std::string(qz::dtypeName(c.type)));
                ++checked;
            }
    QCOMPARE(checked, 30);
    QVERIFY2(panel.summary()->text().contains(
                 QStringLiteral("%1 MiB").arg(double(plan->fileBytes) / 1048576.0, 0, 'f', 2)),
             qPrintable(panel.summary()->text()));
    QCOMPARE(view->table()->item(0, 4)->text(), QStringLiteral("—")); // nothing measured yet

    // Measured weights: the KL-divergence of every tensor alone, shown beside the prediction.
    view->measureKldBox()->setChecked(true);
    QTest::mouseClick(view->measureButton(), Qt::LeftButton);
    QVERIFY(!view->measurer()->isRunning()); // needs a text
    view->calibEdit()->setText(QStringLiteral(QZ_TEST_DATA "/text/shakespeare-valid.txt"));
    measured.clear();
    viewPlanned.clear();
    QTest::mouseClick(view->measureButton(), Qt::LeftButton);
    QVERIFY(view->measurer()->isRunning());
    QVERIFY(measured.wait(600000));
    QVERIFY(viewPlanned.wait(30000));
    for (const auto& tt : view->measurement()->table.tensors)
        if (tt.quantizable) QVERIFY2(tt.measuredKld > 0, tt.name.c_str());
    for (int r = 0; r < view->table()->rowCount(); ++r)
        QVERIFY2(view->table()->item(r, 4)->text().endsWith(QStringLiteral(" at Q3_K")),
                 qPrintable(view->table()->item(r, 4)->text()));
}

QTEST_MAIN(TestTargetSizeView)
#include "test_target_size_view.moc"

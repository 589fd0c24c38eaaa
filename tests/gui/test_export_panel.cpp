// The Export workspace, offscreen: the plan appears before running (types, sizes, bits per weight),
// a per-tensor edit re-plans with that type, an export writes a GGUF file that our reader accepts
// with the planned types, a cancel leaves nothing behind, and "Compare types" draws one plot per type.
// The split and metadata fields: the plan names the number of files, the export writes the parts with
// the overridden key, and an invalid override is reported without running.
#include <QComboBox>
#include <QDir>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>

#include "export_panel.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_reader.h"
#include "histogram_plot.h"
#include "type_compare_view.h"

using namespace qz::ui;

class TestExportPanel : public QObject {
    Q_OBJECT
private slots:
    void planEditExport();
    void cancelLeavesNothing();
    void compareTypes();
    void splitAndOverrides();

private:
    static ModelPtr open(const char* rel) {
        auto m = qz::openModel(std::string(QZ_TEST_DATA "/models/") + rel);
        return m.ok() ? ModelPtr(*m) : nullptr;
    }
};

void TestExportPanel::planEditExport() {
    ExportPanel panel;
    panel.show();
    auto model = open("bard-llama");
    QVERIFY(model);
    QSignalSpy planned(&panel, &ExportPanel::planShown);
    panel.setModel(model);
    QVERIFY(planned.wait(20000));
    QCOMPARE(panel.planTable()->rowCount(), 39);
    QVERIFY(panel.summary()->text().contains(QStringLiteral("Q4_K_M")));
    QVERIFY(panel.outputEdit()->text().endsWith(QStringLiteral("bard-llama.Q4_K_M.gguf")));

    // The mix gives output.weight Q6_K; the user makes it Q8_0: the plan follows.
    int outputRow = -1;
    for (int r = 0; r < panel.planTable()->rowCount(); ++r)
        if (panel.planTable()->item(r, 1)->text() == QStringLiteral("output.weight")) outputRow = r;
    QVERIFY(outputRow >= 0);
    QCOMPARE(panel.planTable()->item(outputRow, 3)->text(), QStringLiteral("Q6_K"));
    auto* box = qobject_cast<QComboBox*>(panel.planTable()->cellWidget(outputRow, 3));
    QVERIFY(box);
    planned.clear();
    box->setCurrentText(QStringLiteral("Q8_0"));
    QVERIFY(planned.wait(20000));
    QCOMPARE(panel.planTable()->item(outputRow, 3)->text(), QStringLiteral("Q8_0"));
    QCOMPARE(panel.planTable()->item(outputRow, 4)->text(), QString::number(512 * 8 * 34));  // 512 rows of 8 Q8_0 blocks

    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("x.gguf"));
    panel.outputEdit()->setText(out);
    QSignalSpy finished(panel.runner(), &BackgroundJob::finished);
    QTest::mouseClick(panel.exportButton(), Qt::LeftButton);
    QVERIFY(finished.wait(60000));
    QVERIFY(panel.log()->toPlainText().contains(QStringLiteral("blk.3.ffn_up.weight")));
    QVERIFY(panel.summary()->text().contains(QStringLiteral("bits per weight")));
    auto f = qz::GgufFile::open(out.toStdString());
    QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
    QCOMPARE((*f)->findTensor("output.weight")->dtype, qz::DType::Q8_0);
    QCOMPARE((*f)->findTensor("blk.0.ffn_gate.weight")->dtype, qz::DType::Q4_K);
}

void TestExportPanel::cancelLeavesNothing() {
    ExportPanel panel;
    auto model = open("bard-llama");
    QVERIFY(model);
    QSignalSpy planned(&panel, &ExportPanel::planShown);
    panel.setModel(model);
    QVERIFY(planned.wait(20000));
    QTemporaryDir dir;
    panel.outputEdit()->setText(dir.filePath(QStringLiteral("c.gguf")));
    QSignalSpy cancelled(panel.runner(), &BackgroundJob::cancelled);
    QTest::mouseClick(panel.exportButton(), Qt::LeftButton);
    QVERIFY(panel.cancelButton()->isEnabled());
    QTest::mouseClick(panel.cancelButton(), Qt::LeftButton);
    QCOMPARE(cancelled.count(), 1);
    QVERIFY(panel.exportButton()->isEnabled());  // usable at once
    panel.runner()->waitForIdle();
    // The worker either stopped at its next report or had finished; in both cases only a complete
    // file may exist, never a temporary one.
    const QStringList left = QDir(dir.path()).entryList(QDir::Files | QDir::Hidden);
    for (const QString& f : left) QVERIFY2(f == QStringLiteral("c.gguf"), qPrintable(f));
    if (!left.isEmpty()) QVERIFY(qz::GgufFile::open(dir.filePath(QStringLiteral("c.gguf")).toStdString()).ok());
    QVERIFY(panel.log()->toPlainText().contains(QStringLiteral("cancelled")));
}

void TestExportPanel::compareTypes() {
    ExportPanel panel;
    auto model = open("bard-llama");
    QVERIFY(model);
    QSignalSpy planned(&panel, &ExportPanel::planShown);
    panel.setModel(model);
    QVERIFY(planned.wait(20000));
    QSignalSpy ready(panel.compareView(), &TypeCompareView::ready);
    int row = -1;
    for (int r = 0; r < panel.planTable()->rowCount(); ++r)
        if (panel.planTable()->item(r, 1)->text() == QStringLiteral("blk.0.attn_q.weight")) row = r;
    QVERIFY(row >= 0);
    panel.planTable()->selectRow(row);
    QVERIFY(ready.wait(30000));
    // Default selection: 7 types, each plot with the original and the dequantized series
    int drawn = 0;
    for (auto* p : panel.compareView()->plots())
        if (p->isVisibleTo(panel.compareView()) && p->series().size() == 2) ++drawn;
    QCOMPARE(drawn, 7);
    QCOMPARE(panel.compareView()->table()->rowCount(), 7);
}

void TestExportPanel::splitAndOverrides() {
    ExportPanel panel;
    auto model = open("bard-llama");
    QVERIFY(model);
    QSignalSpy planned(&panel, &ExportPanel::planShown);
    panel.setModel(model);
    QVERIFY(planned.wait(20000));
    QTemporaryDir dir;
    panel.outputEdit()->setText(dir.filePath(QStringLiteral("s.gguf")));
    // An invalid override: the summary says why, nothing can run.
    panel.kvOverridesEdit()->setPlainText(QStringLiteral("general.name=text:x"));
    QTRY_VERIFY_WITH_TIMEOUT(panel.summary()->text().contains(QStringLiteral("--override-kv")), 20000);
    QVERIFY(!panel.exportButton()->isEnabled());
    // 39 tensors, at most 10 per file: 4 files.
    planned.clear();
    panel.kvOverridesEdit()->setPlainText(QStringLiteral("general.name=str:from the GUI\nqz.layers=int:4\n"));
    panel.splitModeBox()->setCurrentIndex(panel.splitModeBox()->findData(QStringLiteral("tensors")));
    panel.splitValueEdit()->setText(QStringLiteral("10"));
    emit panel.splitValueEdit()->editingFinished();
    QTRY_VERIFY_WITH_TIMEOUT(panel.summary()->text().contains(QStringLiteral("in 4 files")), 20000);
    QTRY_VERIFY_WITH_TIMEOUT(panel.exportButton()->isEnabled(), 20000);
    QSignalSpy finished(panel.runner(), &BackgroundJob::finished);
    QTest::mouseClick(panel.exportButton(), Qt::LeftButton);
    QVERIFY(finished.wait(60000));
    QCOMPARE(QDir(dir.path()).entryList({QStringLiteral("s-0000?-of-00004.gguf")}, QDir::Files).size(), 4);
    auto m = qz::openModel(dir.filePath(QStringLiteral("s-00001-of-00004.gguf")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
    QCOMPARE((*m)->tensors.size(), size_t(39));
    QCOMPARE(*qz::ggufOf(**m)->getString("general.name"), std::string("from the GUI"));
    QCOMPARE(*qz::ggufOf(**m)->getUInt("qz.layers"), uint64_t(4));
}

QTEST_MAIN(TestExportPanel)
#include "test_export_panel.moc"

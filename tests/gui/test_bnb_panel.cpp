// The bitsandbytes option editors in the method panel and the NF4 code-book markers on the tensor
// histogram. Expected values: the spec fields the test itself sets; the 16 NF4 values published by
// bitsandbytes / the QLoRA paper (typed in here, not taken from the code under test), scaled by the
// tensor's max|x| read from the result row; 36 2-D tensors in the demo model (safetensors header).
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTest>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "bnb_options_editor.h"
#include "histogram_plot.h"
#include "histograms_tab.h"
#include "main_window.h"
#include "method_panel.h"
#include "model_tree.h"
#include "tensor_table.h"
#include "tensor_table_model.h"

using namespace qz::ui;

namespace {
const QString kDemo = QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K");
const QString kDown = QStringLiteral("model.layers.0.mlp.down_proj.weight");  // [64, 172]
constexpr int k2DTensors = 36;
// bitsandbytes' NF4 code book (functional.py / QLoRA appendix), in code order.
constexpr double kNf4[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                             -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                             0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                             0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                             0.7229568362236023, 1.0};

void selectMethod(MethodPanel* p, const char* id) {
    auto* combo = p->findChild<QComboBox*>(QStringLiteral("methodCombo"));
    QVERIFY(combo);
    const int i = combo->findData(QString::fromLatin1(id));
    QVERIFY(i >= 0);
    combo->setCurrentIndex(i);
}

void openDemo(MainWindow& w) {
    QSignalSpy opened(&w, &MainWindow::modelOpened);
    w.openPath(kDemo);
    QVERIFY(opened.wait(30000));
    QTreeWidgetItem* item = w.modelTree()->itemForTensor(kDown);
    QVERIFY(item);
    w.modelTree()->setCurrentItem(item);
}
}  // namespace

class TestBnbPanel : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTest"));
    }

    void fourBitOptions() {
        MethodPanel p;
        selectMethod(&p, "nf4");
        auto* ed = qobject_cast<FourBitOptionsEditor*>(p.optionsEditor());
        QVERIFY(ed);
        QCOMPARE(p.spec().method, qz::QuantMethod::Nf4);
        QCOMPARE(p.spec().blockSize, 64);   // bitsandbytes' default
        QCOMPARE(p.spec().doubleQuant, false);
        QSignalSpy changed(&p, &MethodPanel::choicesChanged);
        ed->blockSizeCombo()->setCurrentIndex(ed->blockSizeCombo()->findData(128));
        QCOMPARE(p.spec().blockSize, 128);
        ed->blockSizeCombo()->setCurrentIndex(ed->blockSizeCombo()->findData(64));
        ed->doubleQuantCheck()->setChecked(true);
        QVERIFY(changed.count() >= 3);
        qz::QuantSpec s = p.spec();
        QCOMPARE(s.method, qz::QuantMethod::Nf4);
        QCOMPARE(s.blockSize, 64);
        QCOMPARE(s.doubleQuant, true);
        QVERIFY(s.validate().ok());
        for (int b : {32, 64, 128, 256}) QVERIFY(ed->blockSizeCombo()->findData(b) >= 0);

        // FP4 has the same editor; setSpec shows a spec's options.
        qz::QuantSpec f;
        f.method = qz::QuantMethod::Fp4;
        f.blockSize = 256;
        f.doubleQuant = false;
        p.setSpec(f);
        QVERIFY(qobject_cast<FourBitOptionsEditor*>(p.optionsEditor()));
        QCOMPARE(p.spec().method, qz::QuantMethod::Fp4);
        QCOMPARE(p.spec().blockSize, 256);
        QCOMPARE(p.spec().doubleQuant, false);

        // The integer methods have no options editor.
        selectMethod(&p, "absmax");
        QVERIFY(!p.optionsEditor());
    }

    void llmInt8Options() {
        MethodPanel p;
        p.setModelLoaded(true);
        selectMethod(&p, "llm-int8");
        auto* ed = qobject_cast<LlmInt8OptionsEditor*>(p.optionsEditor());
        QVERIFY(ed);
        QCOMPARE(p.spec().threshold, 6.0f);
        QCOMPARE(QString::fromStdString(p.spec().calibrationPath), LlmInt8OptionsEditor::bundledText());
        QVERIFY(QFileInfo(LlmInt8OptionsEditor::bundledText()).isFile());
        QVERIFY2(p.validationError().isEmpty(), qPrintable(p.validationError()));
        ed->thresholdSpin()->setValue(4.5);
        ed->contextSpin()->setValue(64);
        ed->chunksSpin()->setValue(3);
        qz::QuantSpec s = p.spec();
        QCOMPARE(s.method, qz::QuantMethod::LlmInt8);
        QCOMPARE(s.threshold, 4.5f);
        QCOMPARE(s.calibCtx, 64);
        QCOMPARE(s.calibChunks, 3);
        // A file that does not exist cannot run.
        ed->setCalibrationPath(QStringLiteral(QZ_BINARY_DIR "/no-such-calibration.txt"));
        QVERIFY(!p.validationError().isEmpty());
        QVERIFY(!p.runButton()->isEnabled());
        ed->setCalibrationPath(LlmInt8OptionsEditor::bundledText());
        QVERIFY(p.validationError().isEmpty());
        QVERIFY(p.runButton()->isEnabled());
    }

    void nf4Markers() {
        MainWindow w;
        w.show();
        openDemo(w);
        if (QTest::currentTestFailed()) return;
        qz::QuantSpec s;
        s.method = qz::QuantMethod::Nf4;
        s.blockSize = 64;
        s.doubleQuant = true;
        w.methodPanel()->setSpec(s);
        QCOMPARE(w.methodPanel()->spec().doubleQuant, true);
        QSignalSpy finished(&w, &MainWindow::runFinished);
        QVERIFY(w.methodPanel()->runButton()->isEnabled());
        QTest::mouseClick(w.methodPanel()->runButton(), Qt::LeftButton);
        QVERIFY(finished.wait(120000));
        QCOMPARE(w.histograms()->tensorName(), kDown);
        const qz::TensorQuantResult* r = w.tensorTable()->model()->find(kDown);
        QVERIFY(r);
        const double absmax = std::max(std::fabs(double(r->range.min)), std::fabs(double(r->range.max)));
        QVERIFY(absmax > 0);
        const QVector<double> m = w.histograms()->tensorPlot()->markers();
        QCOMPARE(m.size(), 16);
        for (int i = 0; i < 16; ++i)
            QVERIFY2(std::fabs(m[i] - kNf4[i] * absmax) <= 1e-6 * absmax, qPrintable(QString::number(i)));
        // 16 lines (+ the label) drawn on the plot, two histogram series.
        QVERIFY(w.histograms()->tensorPlot()->customPlot()->itemCount() >= 16);
        QCOMPARE(w.histograms()->tensorPlot()->customPlot()->graphCount(), 2);
    }

    void llmInt8Run() {
        MainWindow w;
        w.show();
        openDemo(w);
        if (QTest::currentTestFailed()) return;
        selectMethod(w.methodPanel(), "llm-int8");
        auto* ed = qobject_cast<LlmInt8OptionsEditor*>(w.methodPanel()->optionsEditor());
        QVERIFY(ed);
        QCOMPARE(ed->calibrationPath(), LlmInt8OptionsEditor::bundledText());
        ed->contextSpin()->setValue(64);
        ed->chunksSpin()->setValue(2);
        QSignalSpy finished(&w, &MainWindow::runFinished);
        QVERIFY2(w.methodPanel()->runButton()->isEnabled(), qPrintable(w.methodPanel()->validationError()));
        QTest::mouseClick(w.methodPanel()->runButton(), Qt::LeftButton);
        QVERIFY(finished.wait(180000));
        TensorTableModel* tm = w.tensorTable()->model();
        QCOMPARE(tm->rowCount(), k2DTensors);
        const qz::TensorQuantResult* r = tm->find(kDown);
        QVERIFY(r);
        QVERIFY(r->outlierColumns >= 0);   // an llm-int8 row
        QVERIFY(r->maxActivation > 0);     // the calibration text was run
        // No code-book markers for LLM.int8 (integer codes).
        QVERIFY(w.histograms()->tensorPlot()->markers().isEmpty());
    }
};

QTEST_MAIN(TestBnbPanel)
#include "test_bnb_panel.moc"

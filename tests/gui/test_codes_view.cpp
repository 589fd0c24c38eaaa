// The Codes workspace (ui/codes_view.h, core quant/code_view.h): the raw codes as the first notebook
// prints them. Expected values are computed here with the notebook's formulas in float32, as torch
// evaluates them (core/quant/README.md §1), on a small tensor written by the test — not by our quantizer:
//   absmax:     scale = 127 / max|X|;  q = round(scale·X);  X̂ = q / scale
//   zero-point: scale = 255 / (max − min);  zp = round(−scale·min − 128);
//               q = clip(round(X·scale + zp), −128, 127);  X̂ = (q − zp) / scale
// The tensor is the notebook's worked example (max 3.2, min −3.0: 0.1 → absmax 4, zero-point −1, scale
// 41.13, zp −5). LLM.int8(): codes round(x·127/rowmax) with rowmax over the non-outlier input features,
// outlier features kept as fp16 (rounded here with Qt's qfloat16); the outlier features are handed in as a
// finished run's result, for a [out × in] weight and a GPT-2 Conv1D weight stored [in × out].
// In the main window the view follows the tensor picked in the tree and the method picked in the panel.
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QPushButton>
#include <QRegularExpression>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <QtNumeric>
#include <algorithm>
#include <cmath>
#include <qfloat16.h>

#include "bnb_options_editor.h"
#include "codes_view.h"
#include "io/safetensors_writer.h"
#include "main_window.h"
#include "method_panel.h"
#include "model_tree.h"
#include "workspace_tabs.h"

using namespace qz::ui;

namespace {
const QString kDemo = QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K");
const QString kDown = QStringLiteral("model.layers.0.mlp.down_proj.weight"); // [64, 172]
const QString kUp = QStringLiteral("model.layers.1.mlp.up_proj.weight");     // [172, 64]

// The notebook's worked example tensor [3 × 4]: max 3.2, min −3.0.
const float kA[12] = {0.1f, -0.5f, 3.2f, 0.25f, -3.0f, 1.0f, 0.0f, 2.2f, 0.7f, -1.3f, 0.05f, -0.9f};
// An [out 4 × in 6] linear weight; input features 2 and 5 will be outliers.
const float kLin[24] = {0.3f,  -0.2f, 5.0f,  0.1f,   0.05f, -4.0f, -0.6f, 0.45f, 0.5f, 0.2f,  -0.1f, 2.0f,
                        0.01f, 0.02f, -7.0f, -0.03f, 0.04f, 1.5f,  0.9f,  -0.8f, 0.7f, -0.6f, 0.5f,  -3.3f};

float h16(float x) {
    return float(qfloat16(x));
}

bool writeModel(const QString& path) {
    qz::SafetensorsWriter w;
    std::vector<float> conv(24); // h.0.mlp.c_fc.weight = kLin transposed: [in 6 × out 4]
    for (int o = 0; o < 4; ++o)
        for (int i = 0; i < 6; ++i)
            conv[i * 4 + o] = kLin[o * 6 + i];
    if (!w.open(path.toStdString(), {{"a.weight", qz::DType::F32, {3, 4}},
                                     {"model.layers.0.mlp.down_proj.weight", qz::DType::F32, {4, 6}},
                                     {"h.0.mlp.c_fc.weight", qz::DType::F32, {6, 4}}}))
        return false;
    return w.writeTensorFromF32(kA) && w.writeTensorFromF32(kLin) && w.writeTensorFromF32(conv) && w.finish();
}

bool waitShown(CodesView& v) {
    QSignalSpy shown(&v, &CodesView::windowShown);
    return shown.wait(20000);
}

QString cell(CodesView& v, CodesView::Table t, int r, int c) {
    auto* item = v.table(t)->item(r, c);
    return item ? item->text() : QStringLiteral("<none>");
}

void selectMethod(MethodPanel* p, const char* id) {
    auto* combo = p->findChild<QComboBox*>(QStringLiteral("methodCombo"));
    QVERIFY(combo);
    const int i = combo->findData(QString::fromLatin1(id));
    QVERIFY(i >= 0);
    combo->setCurrentIndex(i);
}
} // namespace

class TestCodesView : public QObject {
    Q_OBJECT
    QTemporaryDir m_dir;
    ModelPtr m_model;

  private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTest"));
        QVERIFY(m_dir.isValid());
        const QString path = m_dir.filePath(QStringLiteral("tiny.safetensors"));
        QVERIFY(writeModel(path));
        auto m = qz::openModel(path.toStdString());
        QVERIFY2(m, m ? "" : m.error().message.c_str());
        m_model = *m;
    }

    // absmax and zero-point codes of the notebook's example, per tensor, 8 bits.
    void notebookCodes() {
        CodesView v;
        v.show();
        v.setModel(m_model);
        qz::QuantSpec s; // absmax 8-bit per tensor
        v.setSpec(s);
        v.setWindow(0, 0, 16, 16); // larger than the tensor: clamped to 3 × 4
        v.setTensor(QStringLiteral("a.weight"));
        QVERIFY(waitShown(v));
        const qz::CodeWindow* w = v.window();
        QVERIFY(w);
        QCOMPARE(w->rows, int64_t(3));
        QCOMPARE(w->cols, int64_t(4));
        QCOMPARE(v.table(CodesView::Codes)->rowCount(), 3);
        QCOMPARE(v.table(CodesView::Codes)->columnCount(), 4);
        float amax = 0;
        for (float x : kA)
            amax = std::max(amax, std::fabs(x));
        const float sAbs = 127.0f / amax; // 39.6875
        QCOMPARE(sAbs, 39.6875f);
        for (int i = 0; i < 12; ++i) {
            const float q = std::nearbyint(sAbs * kA[i]);
            QCOMPARE(w->codes[i], int32_t(q));
            QCOMPARE(cell(v, CodesView::Codes, i / 4, i % 4), QString::number(int(q)));
            QCOMPARE(w->dequantized[i], q / sAbs);
            QCOMPARE(w->original[i], kA[i]);
        }
        QCOMPARE(w->codes[0], 4); // the notebook: 0.1 -> 4 -> 0.1008
        QVERIFY(std::fabs(w->dequantized[0] - 0.1008f) < 5e-5f);
        QVERIFY2(v.scalesText().contains(QStringLiteral("39.6875")), qPrintable(v.scalesText()));
        // The error table is dequantized − original.
        QCOMPARE(cell(v, CodesView::Error, 0, 0), QString::number(double(4 / sAbs) - double(0.1f), 'g', 6));
        // torch's print of the codes (3 × 4 int8, width 4 = "-119"), typed by hand from the codes above.
        const QString t = v.text();
        QVERIFY2(t.contains(QStringLiteral("tensor([[   4,  -20,  127,   10],\n"
                                           "        [-119,   40,    0,   87],\n"
                                           "        [  28,  -52,    2,  -36]], dtype=torch.int8)")),
                 qPrintable(t));
        QVERIFY(t.contains(QStringLiteral("tensor([[ 0.1000, -0.5000,  3.2000,  0.2500],")));

        qz::QuantSpec z;
        z.method = qz::QuantMethod::ZeroPoint;
        v.setSpec(z);
        QVERIFY(waitShown(v));
        w = v.window();
        QVERIFY(w);
        float lo = kA[0], hi = kA[0];
        for (float x : kA)
            lo = std::min(lo, x), hi = std::max(hi, x);
        const float sZp = 255.0f / (hi - lo);
        const float zp = std::nearbyint(-sZp * lo - 128.0f);
        QCOMPARE(zp, -5.0f); // the notebook's zp
        QVERIFY(std::fabs(sZp - 41.13f) < 0.005f);
        QCOMPARE(w->groups.size(), size_t(1));
        QCOMPARE(w->groups[0].zero, -5);
        QCOMPARE(w->groups[0].scale, sZp);
        for (int i = 0; i < 12; ++i) {
            const float q = std::clamp(std::nearbyint(kA[i] * sZp + zp), -128.0f, 127.0f);
            QCOMPARE(w->codes[i], int32_t(q));
            QCOMPARE(cell(v, CodesView::Codes, i / 4, i % 4), QString::number(int(q)));
            QCOMPARE(w->dequantized[i], (q - zp) / sZp);
        }
        QCOMPARE(w->codes[0], -1); // the notebook: 0.1 -> -1
        QVERIFY(v.scalesText().contains(QStringLiteral("zero-point -5")));

        // Per-row absmax: one scale per row, 127 / max|row|.
        qz::QuantSpec r;
        r.granularity = qz::Granularity::Row;
        v.setSpec(r);
        QVERIFY(waitShown(v));
        w = v.window();
        QCOMPARE(w->groups.size(), size_t(3));
        for (int row = 0; row < 3; ++row) {
            float m = 0;
            for (int c = 0; c < 4; ++c)
                m = std::max(m, std::fabs(kA[row * 4 + c]));
            for (int c = 0; c < 4; ++c)
                QCOMPARE(w->codes[row * 4 + c], int32_t(std::nearbyint((127.0f / m) * kA[row * 4 + c])));
        }
        // A window inside the tensor: rows 1..2, cols 2..3.
        v.setWindow(1, 2, 2, 2);
        QVERIFY(waitShown(v));
        w = v.window();
        QCOMPARE(w->row0, int64_t(1));
        QCOMPARE(w->col0, int64_t(2));
        QCOMPARE(w->original[0], kA[6]);
        QCOMPARE(v.table(CodesView::Original)->verticalHeaderItem(0)->text(), QStringLiteral("1"));
        QCOMPARE(v.table(CodesView::Original)->horizontalHeaderItem(1)->text(), QStringLiteral("3"));
    }

    // LLM.int8(): outlier features from a finished run are marked and kept in fp16.
    void llmInt8Outliers() {
        CodesView v;
        v.show();
        v.setModel(m_model);
        qz::QuantSpec s;
        s.method = qz::QuantMethod::LlmInt8;
        v.setSpec(s);
        v.setWindow(0, 0, 8, 8);
        v.setTensor(QStringLiteral("model.layers.0.mlp.down_proj.weight"));
        QVERIFY(waitShown(v));
        // No run yet: no outliers, and the view says so.
        QVERIFY2(v.noteText().contains(QStringLiteral("No LLM.int8() run")), qPrintable(v.noteText()));
        for (uint8_t k : v.window()->keptFp16)
            QCOMPARE(int(k), 0);
        QVERIFY(!v.outlierButton()->isEnabled());

        auto result = std::make_shared<qz::QuantizeResult>();
        result->spec = s;
        qz::TensorQuantResult lin, conv;
        lin.name = "model.layers.0.mlp.down_proj.weight";
        lin.outlierFeatures = {2, 5};
        conv.name = "h.0.mlp.c_fc.weight";
        conv.outlierFeatures = {1};
        result->tensors = {lin, conv};
        v.setResult(result);
        QVERIFY(waitShown(v));
        const qz::CodeWindow* w = v.window();
        QCOMPARE(w->rows, int64_t(4));
        QCOMPARE(w->cols, int64_t(6));
        QCOMPARE(w->outlierFeatures, int64_t(2));
        auto isOut = [](int i) { return i == 2 || i == 5; };
        for (int o = 0; o < 4; ++o) {
            float rowmax = 0;
            for (int i = 0; i < 6; ++i)
                if (!isOut(i)) rowmax = std::max(rowmax, std::fabs(kLin[o * 6 + i]));
            for (int i = 0; i < 6; ++i) {
                const int e = o * 6 + i;
                if (isOut(i)) {
                    QCOMPARE(int(w->keptFp16[e]), 1);
                    QCOMPARE(w->codes[e], 0);
                    QCOMPARE(w->dequantized[e], h16(kLin[e]));
                    QCOMPARE(v.table(CodesView::Codes)->item(o, i)->background().color(),
                             QColor(255, 224, 178));
                } else {
                    QCOMPARE(int(w->keptFp16[e]), 0);
                    QCOMPARE(w->codes[e], int32_t(std::nearbyint(kLin[e] * (127.0f / rowmax))));
                    QCOMPARE(v.table(CodesView::Codes)->item(o, i)->background().style(), Qt::NoBrush);
                }
            }
        }
        for (int i = 0; i < 6; ++i)
            QCOMPARE(
                v.table(CodesView::Codes)->horizontalHeaderItem(i)->text().endsWith(QStringLiteral("fp16")),
                isOut(i));
        QVERIFY(v.text().contains(QStringLiteral("..*..*"))); // the fp16 map of the window's rows
        QVERIFY(v.noteText().contains(QStringLiteral("2 outlier feature")));
        // "Next outlier feature" moves the window to feature 2, then 5.
        QVERIFY(v.outlierButton()->isEnabled());
        v.setWindow(0, 0, 4, 2);
        QVERIFY(waitShown(v));
        v.outlierButton()->click();
        QVERIFY(waitShown(v));
        QCOMPARE(v.window()->col0, int64_t(2));
        QCOMPARE(int(v.window()->keptFp16[0]), 1);
        v.outlierButton()->click();
        QVERIFY(waitShown(v));
        QCOMPARE(v.window()->col0, int64_t(5));

        // GPT-2 Conv1D weight stored [in 6 × out 4]: input feature 1 is stored row 1.
        v.setWindow(0, 0, 8, 8);
        v.setTensor(QStringLiteral("h.0.mlp.c_fc.weight"));
        QVERIFY(waitShown(v));
        w = v.window();
        QCOMPARE(w->rows, int64_t(6));
        QCOMPARE(w->cols, int64_t(4));
        for (int o = 0; o < 4; ++o) {
            float rowmax = 0; // over input features != 1, of output feature o
            for (int i = 0; i < 6; ++i)
                if (i != 1) rowmax = std::max(rowmax, std::fabs(kLin[o * 6 + i]));
            for (int i = 0; i < 6; ++i) {
                const int e = i * 4 + o;
                QCOMPARE(int(w->keptFp16[e]), i == 1 ? 1 : 0);
                if (i == 1)
                    QCOMPARE(w->dequantized[e], h16(kLin[o * 6 + i]));
                else
                    QCOMPARE(w->codes[e], int32_t(std::nearbyint(kLin[o * 6 + i] * (127.0f / rowmax))));
            }
        }
        for (int i = 0; i < 6; ++i)
            QCOMPARE(
                v.table(CodesView::Codes)->verticalHeaderItem(i)->text().endsWith(QStringLiteral("fp16")),
                i == 1);
        QVERIFY(v.noteText().contains(QStringLiteral("Conv1D")));
    }

    // In the main window: the Codes workspace follows the tree and the method panel.
    // Opening another model while a window is being computed: the late window of the first model is
    // dropped (regression: it used to be shown, with the old model's numbers, under the new model).
    void newModelDropsPendingWindow() {
        CodesView v;
        v.show();
        v.setModel(m_model);
        v.setSpec(qz::QuantSpec{});
        QSignalSpy shown(&v, &CodesView::windowShown);
        v.setTensor(QStringLiteral("a.weight")); // queued on the worker
        QVERIFY(v.isBusy());
        auto other = qz::openModel(m_dir.filePath(QStringLiteral("tiny.safetensors")).toStdString());
        QVERIFY(other);
        v.setModel(*other); // before the worker's answer is delivered (same event-loop turn)
        QTRY_VERIFY_WITH_TIMEOUT(!v.isBusy(), 20000);
        QTest::qWait(50);
        QCOMPARE(shown.count(), 0);
        QVERIFY(v.window() == nullptr);
        QVERIFY(v.tensorName().isEmpty());
        QVERIFY(!v.copyButton()->isEnabled());
        // The new model works normally.
        v.setTensor(QStringLiteral("a.weight"));
        QVERIFY(waitShown(v));
        QVERIFY(v.window());
        QCOMPARE(v.window()->original[0], kA[0]);
    }

    // Row and group scales on a tensor larger than the torch print's threshold (the view quantizes only
    // the rows it shows): a window in the middle and the summarised print's first / last rows match the
    // notebook's formulas computed here over each row (absmax) or group of 64 (zero-point).
    void rowWiseWindowOfLargeTensor() {
        auto model = qz::openModel(kDemo.toStdString());
        QVERIFY(model);
        auto x = qz::readTensorF32(**model, *(*model)->find(kDown.toStdString()));
        QVERIFY(x);
        const int rows = 64, cols = 172;
        QCOMPARE(int(x->size()), rows * cols);
        auto absmaxCode = [&](int r, int c) {
            float m = 0;
            for (int k = 0; k < cols; ++k)
                m = std::max(m, std::fabs((*x)[r * cols + k]));
            return int(std::nearbyint((127.0f / m) * (*x)[r * cols + c]));
        };
        auto zeroPointCode = [&](int r, int c) {
            const int g0 = (c / 64) * 64, g1 = std::min(cols, g0 + 64);
            float lo = (*x)[r * cols + g0], hi = lo;
            for (int k = g0; k < g1; ++k)
                lo = std::min(lo, (*x)[r * cols + k]), hi = std::max(hi, (*x)[r * cols + k]);
            const float sc = 255.0f / (hi - lo);
            const float zp = std::nearbyint(-sc * lo - 128.0f);
            return int(std::clamp(std::nearbyint((*x)[r * cols + c] * sc + zp), -128.0f, 127.0f));
        };
        // The integers of a line of a torch print.
        auto ints = [](const QString& line) {
            QList<int> v;
            QRegularExpressionMatchIterator it =
                QRegularExpression(QStringLiteral("(?<![\\w.])-?\\d+(?![\\d.])")).globalMatch(line);
            while (it.hasNext())
                v << it.next().captured(0).toInt();
            return v;
        };
        for (int k = 0; k < 2; ++k) {
            qz::QuantSpec s;
            s.method = k == 0 ? qz::QuantMethod::Absmax : qz::QuantMethod::ZeroPoint;
            s.granularity = k == 0 ? qz::Granularity::Row : qz::Granularity::Group;
            s.groupSize = 64;
            auto code = [&](int r, int c) { return k == 0 ? absmaxCode(r, c) : zeroPointCode(r, c); };
            CodesView v;
            v.show();
            v.setModel(*model);
            v.setSpec(s);
            v.setTensor(kDown);
            v.setWindow(30, 120, 4, 6);
            QTRY_VERIFY_WITH_TIMEOUT(!v.isBusy() && v.window() && v.window()->row0 == 30, 20000);
            const qz::CodeWindow* w = v.window();
            QCOMPARE(w->col0, int64_t(120));
            for (int r = 0; r < 4; ++r)
                for (int c = 0; c < 6; ++c) {
                    QCOMPARE(w->codes[size_t(w->at(r, c))], code(30 + r, 120 + c));
                    QCOMPARE(w->original[size_t(w->at(r, c))], (*x)[(30 + r) * cols + 120 + c]);
                }
            // The whole-tensor print: rows 0..2 and 61..63, columns 0..2 and 169..171.
            const QStringList lines = QString::fromStdString(w->torchCodes).split(QLatin1Char('\n'));
            QStringList rowLines;
            for (const QString& l : lines)
                if (l.contains(QLatin1Char('[')) && ints(l).size() == 6) rowLines << l;
            QCOMPARE(rowLines.size(), 6);
            const int shownRows[6] = {0, 1, 2, 61, 62, 63}, shownCols[6] = {0, 1, 2, 169, 170, 171};
            for (int i = 0; i < 6; ++i) {
                QList<int> want;
                for (int c : shownCols)
                    want << code(shownRows[i], c);
                QCOMPARE(ints(rowLines[i]), want);
            }
        }
    }

    void followsSelection() {
        MainWindow mw;
        mw.show();
        QSignalSpy opened(&mw, &MainWindow::modelOpened);
        mw.openPath(kDemo);
        QVERIFY(opened.wait(30000));
        CodesView* v = mw.codesView();
        QVERIFY(v);
        QVERIFY(mw.workspaces()->ids().contains(QStringLiteral("codes")));
        QVERIFY(mw.workspaces()->showWorkspace(QStringLiteral("codes")));
        selectMethod(mw.methodPanel(), "absmax");
        QSignalSpy shown(v, &CodesView::windowShown);
        mw.modelTree()->setCurrentItem(mw.modelTree()->itemForTensor(kDown));
        QVERIFY(shown.wait(20000));
        QCOMPARE(v->tensorName(), kDown);
        QCOMPARE(v->window()->tensorRows, int64_t(64));
        QCOMPARE(v->window()->tensorCols, int64_t(172));
        QCOMPARE(v->spec().method, qz::QuantMethod::Absmax);
        // The same codes as the notebook's absmax formula on the tensor read here.
        auto model = qz::openModel(kDemo.toStdString());
        QVERIFY(model);
        auto x = qz::readTensorF32(**model, *(*model)->find(kDown.toStdString()));
        QVERIFY(x);
        float amax = 0;
        for (float f : *x)
            amax = std::max(amax, std::fabs(f));
        const float s = 127.0f / amax;
        for (int c = 0; c < int(v->window()->cols); ++c)
            QCOMPARE(v->window()->codes[c], int32_t(std::nearbyint(s * (*x)[c])));

        // The method panel: zero-point, then NF4 (4-bit code indices 0..15).
        shown.clear();
        selectMethod(mw.methodPanel(), "zeropoint");
        QVERIFY(shown.wait(20000));
        while (shown.wait(300)) {
        } // settle: several choicesChanged may fire
        QCOMPARE(v->spec().method, qz::QuantMethod::ZeroPoint);
        QCOMPARE(v->window()->spec.method, qz::QuantMethod::ZeroPoint);
        float lo = (*x)[0], hi = (*x)[0];
        for (float f : *x)
            lo = std::min(lo, f), hi = std::max(hi, f);
        const float sz = 255.0f / (hi - lo);
        QCOMPARE(v->window()->groups.at(0).zero, int32_t(std::nearbyint(-sz * lo - 128.0f)));
        shown.clear();
        selectMethod(mw.methodPanel(), "nf4");
        QVERIFY(shown.wait(20000));
        while (shown.wait(300)) {
        }
        QCOMPARE(v->window()->spec.method, qz::QuantMethod::Nf4);
        for (int32_t q : v->window()->codes)
            QVERIFY(q >= 0 && q <= 15);
        QVERIFY(v->text().contains(QStringLiteral("dtype=torch.uint8")));

        // Another tensor in the tree.
        shown.clear();
        mw.modelTree()->setCurrentItem(mw.modelTree()->itemForTensor(kUp));
        QVERIFY(shown.wait(20000));
        QCOMPARE(v->tensorName(), kUp);
        QCOMPARE(v->window()->tensorRows, int64_t(172));
        QVERIFY(v->copyButton()->isEnabled());
    }

    // An LLM.int8() run in the main window: the Codes workspace marks the run's calibrated outlier
    // features of the focused tensor (threshold 1.0 so that the tiny demo model has some).
    void llmInt8Run() {
        MainWindow mw;
        mw.show();
        QSignalSpy opened(&mw, &MainWindow::modelOpened);
        mw.openPath(kDemo);
        QVERIFY(opened.wait(30000));
        QVERIFY(mw.workspaces()->showWorkspace(QStringLiteral("codes")));
        CodesView* v = mw.codesView();
        selectMethod(mw.methodPanel(), "llm-int8");
        auto* ed = qobject_cast<LlmInt8OptionsEditor*>(mw.methodPanel()->optionsEditor());
        QVERIFY(ed);
        ed->thresholdSpin()->setValue(1.0);
        ed->contextSpin()->setValue(64);
        ed->chunksSpin()->setValue(2);
        QSignalSpy shown(v, &CodesView::windowShown);
        mw.modelTree()->setCurrentItem(mw.modelTree()->itemForTensor(kDown));
        QVERIFY(shown.wait(20000));
        QVERIFY(v->noteText().contains(QStringLiteral("No LLM.int8() run")));
        QSignalSpy finished(&mw, &MainWindow::runFinished);
        QVERIFY2(mw.methodPanel()->runButton()->isEnabled(), qPrintable(mw.methodPanel()->validationError()));
        QTest::mouseClick(mw.methodPanel()->runButton(), Qt::LeftButton);
        QVERIFY(finished.wait(180000));
        while (shown.wait(500)) {
        }
        QVERIFY(mw.result());
        const qz::TensorQuantResult* r = nullptr;
        for (const auto& t : mw.result()->tensors)
            if (QString::fromStdString(t.name) == kDown) r = &t;
        QVERIFY(r);
        QVERIFY2(!r->outlierFeatures.empty(), "threshold 1.0 should find outlier features");
        QCOMPARE(v->tensorName(), kDown);
        const qz::CodeWindow* w = v->window();
        QVERIFY(w);
        QCOMPARE(w->outlierFeatures, int64_t(r->outlierFeatures.size()));
        QVERIFY(v->noteText().contains(QStringLiteral("kept in fp16")));
        // Move the window onto the first outlier feature (a column of down_proj [out 64 × in 172]).
        shown.clear();
        v->outlierButton()->click();
        QVERIFY(shown.wait(20000));
        w = v->window();
        const auto& of = r->outlierFeatures; // the next one after column 0 (wrapping to the first)
        const int32_t next = of.front() > 0 ? of.front() : (of.size() > 1 ? of[1] : of.front());
        QCOMPARE(w->col0, int64_t(next));
        for (int64_t c = 0; c < w->cols; ++c) {
            const bool out = std::binary_search(r->outlierFeatures.begin(), r->outlierFeatures.end(),
                                                int32_t(w->col0 + c));
            for (int64_t row = 0; row < w->rows; ++row)
                QCOMPARE(bool(w->keptFp16[size_t(w->at(row, c))]), out);
            QCOMPARE(v->table(CodesView::Codes)
                         ->horizontalHeaderItem(int(c))
                         ->text()
                         .endsWith(QStringLiteral("fp16")),
                     out);
        }
    }
};

QTEST_MAIN(TestCodesView)
#include "test_codes_view.moc"

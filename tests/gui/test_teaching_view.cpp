// The Teaching workspace (ui/teaching_view.h) drives each view on a tensor written by the test and checks
// that what is plotted is what the engine computes, by routes independent of the view:
//   number line: the plotted values are the tensor's (written here), the plotted grid points are the
//     notebook's formulas evaluated here;
//   k-quant super-block: the codes in the bar plot with the scale / min codes in the table, put together as
//     d·sc·q − dmin·m, equal llama.cpp's dequantization (ggml/dequantize.h) of the bytes that core/ggml's
//     quantizer writes for the same 256 values (called here directly); the reconstruction line is that too;
//   GPTQ: Next pressed through every column ends at quantizeLayerGptq's codes (called here on the same
//     slice and Hessian), Previous goes back, Play runs to the end;
//   EXL2: after a small real EXL2 run of the bard-llama test model, every module's chosen point is the
//     optimizer's choice at total_bits / numel of the module.
// In the main window the view follows the tensor picked in the tree.
#include <QComboBox>
#include <QFile>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "exl2/exl2_export.h"
#include "exl2/exl2_measure.h"
#include "ggml/dequantize.h"
#include "ggml/kquants.h"
#include "gptq/gptq_quant.h"
#include "io/safetensors_writer.h"
#include "main_window.h"
#include "model_tree.h"
#include "teaching_view.h"
#include "workspace_tabs.h"

using namespace qz::ui;

namespace {
constexpr int kRows = 6, kCols = 512;

float valueAt(int r, int c) { // smooth, signed, with a few outliers; not symmetric
    float v = 0.03f * std::sin(0.37f * float(c) + 1.3f * float(r)) +
              0.011f * std::cos(0.05f * float(c * (r + 1))) + 0.004f;
    if ((c * 7 + r) % 97 == 0) v *= 6.f;
    return v;
}

std::vector<float> tensorValues() {
    std::vector<float> x(size_t(kRows) * kCols);
    for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < kCols; ++c)
            x[size_t(r) * kCols + c] = valueAt(r, c);
    return x;
}

int sentences(const QString& html) {
    QString text = html;
    text.remove(QRegularExpression(QStringLiteral("<[^>]*>")));
    return int(text.count(QRegularExpression(QStringLiteral("[.!?](\\s|$)"))));
}

// A picture of the view for the build folder (to look at, not compared).
void snap(TeachingView& v, const QString& name) {
    v.resize(1150, 900);
    v.show();
    QCoreApplication::processEvents();
    for (int i = 0; i < TeachingView::ViewCount; ++i)
        for (int k = 0; k < 2; ++k)
            if (QCustomPlot* p = v.plot(TeachingView::View(i), k)) p->replot();
    v.grab().save(QStringLiteral(QZ_BINARY_DIR "/teaching_%1.png").arg(name));
}

QVector<double> sorted(QVector<double> v) {
    std::sort(v.begin(), v.end());
    return v;
}
} // namespace

class TestTeachingView : public QObject {
    Q_OBJECT
  private slots:
    void initTestCase();
    void captions();
    void numberLine();
    void superBlock_data();
    void superBlock();
    void gptqSteps();
    void gptqPlay();
    void gptqCalibration();
    void exl2Allocation();
    void followsTheTree();

  private:
    QTemporaryDir m_dir;
    ModelPtr m_model;
    QString m_name = QStringLiteral("model.layers.0.mlp.up_proj.weight");
};

void TestTeachingView::initTestCase() {
    QVERIFY(m_dir.isValid());
    const QString path = m_dir.filePath(QStringLiteral("teach.safetensors"));
    qz::SafetensorsWriter w;
    const auto x = tensorValues();
    QVERIFY(w.open(path.toStdString(), {{m_name.toStdString(), qz::DType::F32, {kRows, kCols}}}));
    QVERIFY(w.writeTensorFromF32(x));
    QVERIFY(w.finish());
    auto m = qz::openModel(path.toStdString());
    QVERIFY2(m, m ? "" : m.error().message.c_str());
    m_model = *m;
}

// Every view has a caption of 2..4 sentences.
void TestTeachingView::captions() {
    TeachingView v;
    for (int i = 0; i < TeachingView::ViewCount; ++i) {
        const int n = sentences(v.caption(TeachingView::View(i)));
        QVERIFY2(n >= 2 && n <= 4, qPrintable(QStringLiteral("view %1: %2 sentences").arg(i).arg(n)));
    }
    QCOMPARE(v.viewCombo()->count(), int(TeachingView::ViewCount));
}

// Row 2, columns 10..17 at 4 bits. Independent expectations (the notebook's formulas, here in double):
//   absmax: s = 7 / max|x|; the dequantized point of x is round(s·x)/s
//   zero-point: s = 15 / (max − min), zp = round(−s·min − 8); point (clip(round(s·x + zp), −8, 7) − zp)/s
void TestTeachingView::numberLine() {
    TeachingView v;
    v.setModel(m_model);
    v.setTensor(m_name);
    v.setView(TeachingView::NumberLineView);
    v.setNumberLine(2, 10, 8, 4);
    QVERIFY2(v.numberLine(), qPrintable(v.error(TeachingView::NumberLineView)));
    QVector<double> x;
    for (int c = 10; c < 18; ++c)
        x << valueAt(2, c);
    QCOMPARE(sorted(v.plotted(TeachingView::NumberLineView, QStringLiteral("absmax values"), true)),
             sorted(x));
    QCOMPARE(sorted(v.plotted(TeachingView::NumberLineView, QStringLiteral("zero-point values"), true)),
             sorted(x));
    double amax = 0, lo = x[0], hi = x[0];
    for (double e : x)
        amax = std::max(amax, std::fabs(e)), lo = std::min(lo, e), hi = std::max(hi, e);
    const double sa = 7 / amax, sz = 15 / (hi - lo), zp = std::nearbyint(-sz * lo - 8);
    QVector<double> qa, qz_;
    for (double e : x) {
        qa << std::nearbyint(sa * e) / sa;
        qz_ << (std::clamp(std::nearbyint(sz * e + zp), -8.0, 7.0) - zp) / sz;
    }
    const auto pa =
        sorted(v.plotted(TeachingView::NumberLineView, QStringLiteral("absmax dequantized"), true));
    const auto pz =
        sorted(v.plotted(TeachingView::NumberLineView, QStringLiteral("zero-point dequantized"), true));
    qa = sorted(qa);
    qz_ = sorted(qz_);
    QCOMPARE(pa.size(), 8);
    for (int i = 0; i < 8; ++i) {
        QVERIFY(std::fabs(pa[i] - qa[i]) < 1e-6);
        QVERIFY(std::fabs(pz[i] - qz_[i]) < 1e-6);
    }
    QCOMPARE(v.numberLine()->zeroPoint.zero, int(zp));
    // the grids: 15 absmax codes (−7..7), 16 zero-point codes
    QCOMPARE(v.plotted(TeachingView::NumberLineView, QStringLiteral("absmax code grid"), true).size(), 15);
    QCOMPARE(v.plotted(TeachingView::NumberLineView, QStringLiteral("zero-point code grid"), true).size(),
             16);
    QVERIFY(v.info(TeachingView::NumberLineView).contains(QStringLiteral("4 bits")));
    snap(v, QStringLiteral("number_line"));
    // the spin boxes drive it: 8 bits gives 255 / 256 grid points
    v.findChild<QSpinBox*>(QStringLiteral("nlBits"))->setValue(8);
    QCOMPARE(v.plotted(TeachingView::NumberLineView, QStringLiteral("absmax code grid"), true).size(), 255);
    QCOMPARE(v.plotted(TeachingView::NumberLineView, QStringLiteral("zero-point code grid"), true).size(),
             256);
}

void TestTeachingView::superBlock_data() {
    QTest::addColumn<int>("type");
    QTest::newRow("Q2_K") << int(qz::DType::Q2_K);
    QTest::newRow("Q3_K") << int(qz::DType::Q3_K);
    QTest::newRow("Q4_K") << int(qz::DType::Q4_K);
    QTest::newRow("Q5_K") << int(qz::DType::Q5_K);
    QTest::newRow("Q6_K") << int(qz::DType::Q6_K);
}

void TestTeachingView::superBlock() {
    QFETCH(int, type);
    const auto t = qz::DType(type);
    TeachingView v;
    v.setModel(m_model);
    v.setTensor(m_name);
    v.setView(TeachingView::SuperBlockView);
    v.setSuperBlock(t, 3, 1);
    QVERIFY2(v.superBlock(), qPrintable(v.error(TeachingView::SuperBlockView)));
    // The quantizer on the same 256 values, called here, and llama.cpp's dequantization of its bytes.
    std::vector<float> x(256);
    for (int i = 0; i < 256; ++i)
        x[i] = valueAt(3, 256 + i);
    std::vector<uint8_t> bytes(qz::traits(t).typeSize);
    switch (t) {
    case qz::DType::Q2_K:
        qz::ggml::quantizeRowsQ2_K(x.data(), bytes.data(), 1, 256, nullptr);
        break;
    case qz::DType::Q3_K:
        qz::ggml::quantizeRowsQ3_K(x.data(), bytes.data(), 1, 256, nullptr);
        break;
    case qz::DType::Q4_K:
        qz::ggml::quantizeRowsQ4_K(x.data(), bytes.data(), 1, 256, nullptr);
        break;
    case qz::DType::Q5_K:
        qz::ggml::quantizeRowsQ5_K(x.data(), bytes.data(), 1, 256, nullptr);
        break;
    default:
        qz::ggml::quantizeRowsQ6_K(x.data(), bytes.data(), 1, 256, nullptr);
        break;
    }
    std::vector<float> deq(256);
    QVERIFY(qz::ggml::dequantize(t, bytes.data(), deq.data(), 256));
    QCOMPARE(v.superBlock()->bytes, bytes);
    const auto& b = *v.superBlock();
    // what is on screen: codes (bars) and the table's scale / min codes
    const QVector<double> codes = v.plotted(
        TeachingView::SuperBlockView, QStringLiteral("stored code (%1 bits)").arg(b.codeBits), false, 1);
    QCOMPARE(codes.size(), 256);
    QTableWidget* table = v.superBlockTable();
    QCOMPARE(table->rowCount(), b.subBlocks);
    const QVector<double> rec =
        v.plotted(TeachingView::SuperBlockView, QStringLiteral("reconstruction (dequantized)"));
    QCOMPARE(rec.size(), 256);
    for (int e = 0; e < 256; ++e) {
        const int s = e / b.subSize;
        const int sc = table->item(s, 2)->text().toInt();
        const int m = b.hasMins ? table->item(s, 4)->text().toInt() : 0;
        const float value = b.d * float(sc) * float(int(codes[e]) - b.codeOffset) - b.dmin * float(m);
        QVERIFY2(std::fabs(value - deq[e]) <= 1e-6f * std::max(1.f, std::fabs(deq[e])),
                 qPrintable(QStringLiteral("element %1: %2 vs %3").arg(e).arg(value).arg(deq[e])));
        QCOMPARE(float(rec[e]), deq[e]);
    }
    QCOMPARE(v.plotted(TeachingView::SuperBlockView, QStringLiteral("weights")).size(), 256);
    if (t == qz::DType::Q4_K) snap(v, QStringLiteral("superblock"));
}

// An 8 × 16 slice from row 1, column 40 at 4 bits: Next through every column ends at quantizeLayerGptq's
// codes on the same slice with the same (synthetic) Hessian.
void TestTeachingView::gptqSteps() {
    TeachingView v;
    v.setModel(m_model);
    v.setTensor(m_name);
    v.setView(TeachingView::GptqView);
    v.setGptqSlice(1, 40, 5, 16, 4); // 6 rows in the tensor: from row 1 there are 5
    QVERIFY2(v.gptqTrace(), qPrintable(v.error(TeachingView::GptqView)));
    const int rows = 5, cols = 16;
    QCOMPARE(v.gptqTrace()->rows, rows);
    std::vector<float> W(size_t(rows) * cols);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
            W[size_t(r) * cols + c] = valueAt(1 + r, 40 + c);
    const std::vector<float> H = qz::teach::syntheticHessian(cols, 4 * cols, 1);
    qz::gptq::QuantConfig c;
    c.bits = 4;
    c.groupSize = -1;
    c.blockSize = 128;
    c.threads = 1;
    auto g = qz::gptq::quantizeLayerGptq(W.data(), rows, cols, H, c);
    QVERIFY(g);
    QCOMPARE(v.gptqStepIndex(), 0);
    QVERIFY(!v.gptqButton("prev")->isEnabled());
    for (int s = 0; s < cols; ++s) {
        v.gptqButton("next")->click();
        QCOMPARE(v.gptqStepIndex(), s + 1);
        // the GPTQ bars appear column by column
        QCOMPARE(v.plotted(TeachingView::GptqView, QStringLiteral("GPTQ Σ|w − ŵ|"), false, 1).size(), s + 1);
        if (s == 6) snap(v, QStringLiteral("gptq"));
    }
    QVERIFY(!v.gptqButton("next")->isEnabled());
    QCOMPARE(v.gptqTrace()->codes, g->codes);
    // the bars at the end: Σ_r |w − scale·(code − zero)| from quantizeLayerGptq's codes and scales
    const auto bars = v.plotted(TeachingView::GptqView, QStringLiteral("GPTQ Σ|w − ŵ|"), false, 1);
    for (int k = 0; k < cols; ++k) {
        double e = 0;
        for (int r = 0; r < rows; ++r)
            e += std::fabs(double(W[size_t(r) * cols + k]) -
                           g->scales[r] * (float(g->codes[size_t(r) * cols + k]) - float(g->zeros[r])));
        QVERIFY(std::fabs(bars[k] - e) < 1e-6);
    }
    // the colour map at the end: the working matrix (quantized values) minus the original
    const auto moved = v.plotted(TeachingView::GptqView, QStringLiteral("change to the weights so far"));
    QCOMPARE(moved.size(), rows * cols);
    QVERIFY(v.info(TeachingView::GptqView).contains(QStringLiteral("GPTQ")));
    v.gptqButton("prev")->click();
    QCOMPARE(v.gptqStepIndex(), cols - 1);
    v.gptqButton("reset")->click();
    QCOMPARE(v.gptqStepIndex(), 0);
    for (double d : v.plotted(TeachingView::GptqView, QStringLiteral("change to the weights so far")))
        QCOMPARE(d, 0.0);
    QVERIFY(v.gptqTrace()->gptqOutputError < v.gptqTrace()->rtnOutputError);
}

void TestTeachingView::gptqPlay() {
    TeachingView v;
    v.setModel(m_model);
    v.setTensor(m_name);
    v.setGptqSlice(0, 0, 4, 6, 3);
    QVERIFY(v.gptqTrace());
    v.gptqButton("play")->click();
    QTRY_COMPARE_WITH_TIMEOUT(v.gptqStepIndex(), 6, 10000);
    QTRY_VERIFY(!v.gptqButton("play")->isChecked());
}

// The Hessian from a calibration text: the demo model reads the sample text on a worker; the trace then
// equals quantizeLayerGptq on the slice with teach::calibrationHessian's matrix (which test_teach checks
// against the layer's inputs computed by hand), and the caption names the text.
void TestTeachingView::gptqCalibration() {
    auto model = qz::openModel(QZ_RESOURCES_DIR "/demo/stories260K");
    QVERIFY(model);
    const QString name = QStringLiteral("model.layers.1.self_attn.q_proj.weight");
    const QString text = QStringLiteral(QZ_RESOURCES_DIR "/texts/shakespeare-valid.txt");
    TeachingView v;
    v.setModel(*model);
    v.setTensor(name);
    v.setView(TeachingView::GptqView);
    v.setGptqSlice(0, 8, 8, 16, 4);
    QVERIFY(v.caption(TeachingView::GptqView).contains(QStringLiteral("synthetic")));
    v.setGptqCalibration(text);
    QVERIFY(!v.isCalibrating()); // hidden: nothing runs until the view is shown
    QVERIFY(!v.gptqTrace());
    v.show();
    QTRY_VERIFY(v.isCalibrating());
    QTRY_VERIFY_WITH_TIMEOUT(v.gptqTrace() != nullptr, 60000);
    QVERIFY(!v.isCalibrating());
    auto H = qz::teach::calibrationHessian(**model, name.toStdString(), 8, 16, text.toStdString(), 16, 128);
    QVERIFY(H);
    QCOMPARE(v.gptqHessian(), *H);
    auto W = qz::teach::readTensorWindow(**model, *(*model)->find(name.toStdString()), 0, 8, 8, 16);
    QVERIFY(W);
    qz::gptq::QuantConfig c;
    c.bits = 4;
    c.groupSize = -1;
    c.blockSize = 128;
    c.threads = 1;
    auto g = qz::gptq::quantizeLayerGptq(W->data(), 8, 16, *H, c);
    QVERIFY(g);
    QCOMPARE(v.gptqTrace()->codes, g->codes);
    QVERIFY(v.caption(TeachingView::GptqView).contains(QStringLiteral("shakespeare-valid.txt")));
    // another slice of the same columns reuses the Hessian (no second run)
    v.setGptqSlice(8, 8, 8, 16, 4);
    QVERIFY(!v.isCalibrating());
    QVERIFY(v.gptqTrace());
    // back to synthetic activations
    v.setGptqCalibration(QString());
    QVERIFY(v.gptqTrace());
    QCOMPARE(v.gptqHessian(), qz::teach::syntheticHessian(16, 64, 1));
    QVERIFY(v.caption(TeachingView::GptqView).contains(QStringLiteral("synthetic")));
}

// A small real EXL2 run (measurement, optimizer, quantization; no files) of the bard-llama test model.
void TestTeachingView::exl2Allocation() {
    auto model = qz::openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY2(model, model ? "" : model.error().message.c_str());
    qz::exl2::ExportParams p;
    p.targetBpw = 4.0;
    p.calibPath = QZ_TEST_DATA "/text/shakespeare-train.txt";
    p.measureCalib = {1, 32, 1};
    p.quantCalib = {1, 32, 1};
    p.annealIterations = 10;
    p.writeOutput = false;
    p.resume = false;
    auto r = qz::exl2::exportExl2(**model, p);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    auto result = std::make_shared<const qz::exl2::ExportResult>(std::move(*r));
    auto plan = qz::exl2::planModel(**model);
    QVERIFY(plan);

    TeachingView v;
    v.setModel(*model);
    v.setView(TeachingView::Exl2View);
    v.setExl2Result(result);
    QVERIFY2(!v.exl2Modules().empty(), qPrintable(v.error(TeachingView::Exl2View)));
    QCOMPARE(v.exl2Modules().size(), result->measurement.size());
    QCOMPARE(v.exl2ModuleCombo()->count(), int(result->measurement.size()));
    const auto chosenBars =
        v.plotted(TeachingView::Exl2View, QStringLiteral("bits per weight chosen"), false, 1);
    QCOMPARE(chosenBars.size(), int(result->measurement.size()));
    for (size_t i = 0; i < result->measurement.size(); ++i) {
        const auto& mm = result->measurement[i];
        QCOMPARE(plan->modules[i].key, mm.key);
        const auto& opt = mm.options[result->strategy[i]];
        const double bpw = double(opt.totalBits) / double(plan->modules[i].numel());
        QCOMPARE(chosenBars[int(i)], bpw);
        v.setExl2Module(int(i));
        QCOMPARE(v.plotted(TeachingView::Exl2View, QStringLiteral("chosen"), true), QVector<double>{bpw});
        QCOMPARE(v.plotted(TeachingView::Exl2View, QStringLiteral("chosen")),
                 QVector<double>{1.0 - opt.accuracy});
        QCOMPARE(v.plotted(TeachingView::Exl2View, QStringLiteral("candidate settings")).size(),
                 int(mm.options.size()));
    }
    QVERIFY(v.info(TeachingView::Exl2View).contains(QStringLiteral("target of 4")));
    v.setExl2Module(3);
    snap(v, QStringLiteral("exl2"));

    // The same measurement as a measurement.json, optimized by the view for the same target, seed and
    // proposals: the export's choice.
    const QString json = m_dir.filePath(QStringLiteral("measurement.json"));
    {
        QFile f(json);
        QVERIFY(f.open(QIODevice::WriteOnly));
        const std::string text =
            qz::exl2::measurementJson(result->measurement, int(plan->modules.size()) + 2);
        f.write(text.data(), qint64(text.size()));
    }
    TeachingView v2;
    v2.setModel(*model);
    QSignalSpy optimized(&v2, &TeachingView::exl2Optimized);
    QVERIFY2(v2.loadExl2Measurement(json, 4.0, p.seed, p.annealIterations),
             qPrintable(v2.error(TeachingView::Exl2View)));
    QVERIFY(optimized.wait(60000));
    QCOMPARE(v2.exl2Modules().size(), result->measurement.size());
    for (size_t i = 0; i < result->measurement.size(); ++i)
        QCOMPARE(v2.exl2Modules()[i].chosen, result->strategy[i]);
    QVERIFY(!v2.isOptimizing());
    // a file that is not a measurement of this model: refused with a reason
    QFile bad(m_dir.filePath(QStringLiteral("bad.json")));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\"measurement\": {\"model.layers.99.mlp\": []}}");
    bad.close();
    QVERIFY(!v2.loadExl2Measurement(bad.fileName(), 4.0));
    QVERIFY(!v2.error(TeachingView::Exl2View).isEmpty());
}

// In the main window: a "teaching" workspace that follows the tree.
void TestTeachingView::followsTheTree() {
    MainWindow w;
    QSignalSpy opened(&w, &MainWindow::modelOpened);
    w.openPath(QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K"));
    QVERIFY(opened.wait(20000));
    QVERIFY(w.workspaces()->ids().contains(QStringLiteral("teaching")));
    QVERIFY(w.workspaces()->showWorkspace(QStringLiteral("teaching")));
    TeachingView* v = w.teachingView();
    QVERIFY(v);
    const QString name = QStringLiteral("model.layers.1.mlp.up_proj.weight");
    w.modelTree()->setCurrentTensor(name);
    QTRY_VERIFY(v->findChild<QLabel*>(QStringLiteral("teachTitle"))->text().contains(name));
    QVERIFY(v->numberLine());
    QVERIFY(v->gptqTrace());
    // 64 columns: shorter than a super-block, said so
    QVERIFY(!v->superBlock());
    QVERIFY(v->error(TeachingView::SuperBlockView).contains(QStringLiteral("256")));
}

QTEST_MAIN(TestTeachingView)
#include "test_teaching_view.moc"

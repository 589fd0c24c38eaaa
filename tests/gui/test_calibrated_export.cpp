// The calibrated exports in the Export workspace, offscreen, driven through the widgets on bard-llama
// with a tiny calibration (a few windows of Shakespeare):
//  - GPTQ: the chart has one slot per quantized layer and, after the run, one GPTQ bar and one RTN bar
//    per layer whose values are the core's LayerReports (the ExportResult's own list); GPTQ's error is
//    below RTN's on most layers; the folder holds quantize_config.json with the chosen settings and no
//    temporary folder is left; the UI is idle again; the before / after histograms of a chosen layer
//    are the histograms of the original weights and of the dequantized result; "Evaluate" gives the
//    original's perplexity (equal to a direct evaluatePerplexity) and the result's, close to it;
//  - GPTQ cancel: Cancel after the first layer makes the UI idle at once, no destination folder exists;
//    exporting again into the same folder resumes the finished layers ("Resumed N layers") and gives
//    the same per-layer errors as an uninterrupted run;
//  - EXL2: one bar per quantized linear (lm_head included) equal to the core's per-layer bits per weight,
//    the target line at the target and the achieved line at the result's figure, which is the
//    numel-weighted mean of the decoder layers' bars and within 0.02 of the target; the folder with
//    config.json (quant_method exl2) and measurement.json; histograms; perplexity near the original;
//  - EXL2 cancel during the measurement leaves no destination and an idle UI; a run given the first
//    run's measurement.json reuses it (nothing measured) and chooses the same settings;
//  - in the main window, "Send to Evaluate workspace" adds the result as a variant there;
//  - a GGUF file cannot be exported as GPTQ / EXL2: the page says so and stays idle;
//  - a missing / empty / binary / too large calibration text or measurement.json is refused with a
//    message naming the file (page idle, no folder); a malformed measurement.json fails the run with a
//    message, without a crash;
//  - "keep the dequantized weights" is on for a small model and off for one above the limit; without it
//    (GPTQ, and EXL2 with a reused measurement) the result is read from the written folder: the layer box
//    lists the same layers, the histograms are those of the kept run's dequantized weights and "Evaluate"
//    gives its perplexity, and "Send" hands the folder-backed variant to the Evaluate workspace;
//  - histograms of a previous result still being computed do not land on the page after another model
//    is opened;
//  - a job whose work still succeeds after Cancel (past its last cancel point) is reported as such
//    instead of leaving "cancelled" as the last word.
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>
#include <atomic>
#include <cmath>

#include "evaluate_panel.h"
#include "exl2_export_page.h"
#include "export_panel.h"
#include "gptq_export_page.h"
#include "histogram_plot.h"
#include "infer/evaluate.h"
#include "infer/hparams.h"
#include "layer_bar_chart.h"
#include "main_window.h"
#include "workspace_tabs.h"
#include <qcustomplot.h>
#include "stats/histogram.h"

using namespace qz::ui;

class TestCalibratedExport : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void gptqEndToEnd();
    void gptqCancelThenResume();
    void exl2EndToEnd();
    void exl2CancelThenReuseMeasurement();
    void variantsReachEvaluateWorkspace();
    void refusesNonHfModel();
    void refusesBadCalibrationAndMeasurement();
    void keepDefaultFollowsModelSize();
    void gptqNotKeptReadsTheFolder();
    void memoryEstimateShownAndChecked();
    void staleHistogramDropped();
    void finishAfterCancelIsReported();

private:
    static ModelPtr open(const char* rel) {
        auto m = qz::openModel(std::string(QZ_TEST_DATA "/models/") + rel);
        return m.ok() ? ModelPtr(*m) : nullptr;
    }
    static void configureGptq(GptqExportPage* page, const QString& out, int samples, int seqLen) {
        page->bitsBox()->setCurrentIndex(page->bitsBox()->findData(4));
        page->groupBox()->setCurrentIndex(page->groupBox()->findData(128));
        page->rtnCheck()->setChecked(true);
        page->setCalibrationPath(QStringLiteral(QZ_TEST_DATA "/text/shakespeare-train.txt"));
        page->samplesSpin()->setValue(samples);
        page->seqLenSpin()->setValue(seqLen);
        page->outputEdit()->setText(out);
    }
    static QJsonObject readJson(const QString& path) {
        QFile f(path);
        if (!f.open(QIODevice::ReadOnly)) return {};
        return QJsonDocument::fromJson(f.readAll()).object();
    }

    static void configureExl2(Exl2ExportPage* page, const QString& out) {
        page->targetSpin()->setValue(4.0);
        page->headBitsBox()->setCurrentIndex(page->headBitsBox()->findData(6));
        page->measureRowsSpin()->setValue(4);
        page->setCalibrationPath(QStringLiteral(QZ_TEST_DATA "/text/shakespeare-train.txt"));
        page->samplesSpin()->setValue(4);
        page->seqLenSpin()->setValue(64);
        page->outputEdit()->setText(out);
    }
    // Checks the histograms of `layer` against the original weights and the page's result.
    void checkHistograms(CalibratedExportPage* page, const QString& layer);
    double evaluatePage(CalibratedExportPage* page, double* original);

    ModelPtr m_model;
    std::vector<qz::gptq::LayerReport> m_fullReports;
    QTemporaryDir m_exl2Dir;                           // the first EXL2 run's folder (its measurement.json)
    std::vector<qz::exl2::LayerReport> m_exl2Reports;  // of the uninterrupted 4-bit run in gptqEndToEnd
    // exl2EndToEnd's (kept) result: the histogram of its checked layer and its perplexity.
    qz::Histogram m_exl2Hist;
    double m_exl2Ppl = 0;
};

void TestCalibratedExport::initTestCase() {
    m_model = open("bard-llama");
    QVERIFY(m_model);
}

void TestCalibratedExport::gptqEndToEnd() {
    ExportPanel panel;
    panel.resize(1400, 1000);
    panel.show();
    panel.setModel(m_model);
    QVERIFY(panel.setFormat(QStringLiteral("gptq")));
    GptqExportPage* page = panel.gptqPage();
    QVERIFY(page->isVisible());
    LayerBarChart* chart = page->chart();
    // Every linear layer of the 4 decoder blocks has its slot before running, no bar yet.
    QCOMPARE(chart->layerCount(), 4 * 7);
    QCOMPARE(chart->barCount(0), 0);

    QTemporaryDir tmp;
    const QString out = tmp.filePath(QStringLiteral("bard-gptq"));
    configureGptq(page, out, 4, 64);
    QSignalSpy finished(page, &CalibratedExportPage::exportFinished);
    QSignalSpy layers(page, &CalibratedExportPage::layerReported);
    QTest::mouseClick(page->exportButton(), Qt::LeftButton);
    QVERIFY(page->cancelButton()->isEnabled());
    QVERIFY(!page->exportButton()->isEnabled());
    QVERIFY(!panel.formatBox()->isEnabled());
    QVERIFY(finished.wait(300000));
    QCOMPARE(finished.first().first().toString(), out);

    // The chart holds the core's per-layer reports: one GPTQ and one RTN bar per layer.
    auto result = page->result();
    QVERIFY(result);
    QCOMPARE(int(result->layers.size()), 28);
    QCOMPARE(layers.count(), 28);
    QCOMPARE(chart->layerCount(), 28);
    QCOMPARE(chart->seriesCount(), 2);
    QCOMPARE(chart->barCount(0), 28);
    QCOMPARE(chart->barCount(1), 28);
    const QVector<double> gptqBars = chart->barValues(0), rtnBars = chart->barValues(1);
    int gptqBetter = 0;
    double sumG = 0, sumR = 0;
    for (const auto& l : result->layers) {
        const int i = chart->layers().indexOf(QString::fromStdString(l.name));
        QVERIFY2(i >= 0, l.name.c_str());
        QVERIFY(l.relErr > 0 && l.relErrRtn > 0);
        QCOMPARE(chart->value(0, i), l.relErr);
        QCOMPARE(chart->value(1, i), l.relErrRtn);
        QCOMPARE(gptqBars[i], l.relErr);  // what QCustomPlot draws
        QCOMPARE(rtnBars[i], l.relErrRtn);
        if (l.relErr < l.relErrRtn) ++gptqBetter;
        sumG += l.relErr;
        sumR += l.relErrRtn;
    }
    QVERIFY2(gptqBetter >= 24, qPrintable(QString::number(gptqBetter)));
    QVERIFY(sumG < sumR);
    m_fullReports = result->layers;
    // Every slot is inside the visible range.
    const QCPRange xr = chart->customPlot()->xAxis->range();
    QVERIFY(xr.lower < -0.4 && xr.upper > 27.4);
    QCOMPARE(page->layerTable()->rowCount(), 28);
    // The metric switch shows AutoGPTQ's loss from the same reports.
    page->setMetric(GptqExportPage::Loss);
    QCOMPARE(chart->seriesCount(), 1);
    QCOMPARE(chart->barCount(0), 28);
    QCOMPARE(chart->value(0, chart->layers().indexOf(QString::fromStdString(result->layers[5].name))), result->layers[5].loss);
    page->setMetric(GptqExportPage::RelativeError);
    QCOMPARE(chart->barCount(1), 28);

    // The folder, with the settings; nothing temporary left beside it.
    QVERIFY(QFileInfo(out).isDir());
    const QJsonObject qc = readJson(out + QStringLiteral("/quantize_config.json"));
    QCOMPARE(qc.value(QStringLiteral("bits")).toInt(), 4);
    QCOMPARE(qc.value(QStringLiteral("group_size")).toInt(), 128);
    QCOMPARE(qc.value(QStringLiteral("desc_act")).toBool(true), false);
    QCOMPARE(qc.value(QStringLiteral("sym")).toBool(false), true);
    QVERIFY(QFileInfo::exists(out + QStringLiteral("/model.safetensors")));
    QCOMPARE(readJson(out + QStringLiteral("/config.json"))
                 .value(QStringLiteral("quantization_config")).toObject().value(QStringLiteral("bits")).toInt(), 4);
    QCOMPARE(QDir(tmp.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
             QStringList{QStringLiteral("bard-gptq")});
    // Idle again.
    QVERIFY(page->exportButton()->isEnabled());
    QVERIFY(!page->cancelButton()->isEnabled());
    QVERIFY(panel.formatBox()->isEnabled());
    QCOMPARE(page->progressBar()->value(), 1000);
    QCOMPARE(page->resumedLayers(), 0);

    // Before / after histograms of a chosen layer: the original weights and the dequantized result.
    QVERIFY(page->hasResult());
    QCOMPARE(page->layerBox()->count(), 28);
    const QString layer = QStringLiteral("model.layers.1.mlp.down_proj.weight");
    QSignalSpy shown(page, &CalibratedExportPage::layerShown);
    page->layerBox()->setCurrentIndex(page->layerBox()->findText(layer));
    QTRY_COMPARE_WITH_TIMEOUT(shown.isEmpty() ? QString() : shown.last().first().toString(), layer, 30000);
    const auto& series = page->histogram()->series();
    QCOMPARE(series.size(), 2);
    const qz::TensorInfo* t = m_model->find(layer.toStdString());
    QVERIFY(t);
    auto original = qz::readTensorF32(*m_model, *t);
    QVERIFY(original.ok());
    QCOMPARE(original->size(), size_t(256 * 768));
    const qz::Histogram& h0 = series[0].histogram;
    const qz::Histogram& h1 = series[1].histogram;
    QCOMPARE(h0.total(), uint64_t(256 * 768));
    QCOMPARE(h1.total(), uint64_t(256 * 768));
    const qz::Histogram expect0 = qz::histogramF32(original->data(), original->size(), h0.bins(), h0.lo, h0.hi);
    QCOMPARE(h0.counts, expect0.counts);
    const auto& deq = page->resultOverrides()->at(layer.toStdString());
    const qz::Histogram expect1 = qz::histogramF32(deq.data(), deq.size(), h1.bins(), h1.lo, h1.hi);
    QCOMPARE(h1.counts, expect1.counts);
    QVERIFY(h0.counts != h1.counts);
    // The dequantized weights are 4-bit: at most 16 levels per row and group of 128 columns.
    for (int row = 0; row < 256; row += 37) {
        std::vector<float> g(deq.begin() + row * 768, deq.begin() + row * 768 + 128);
        std::sort(g.begin(), g.end());
        QVERIFY(std::unique(g.begin(), g.end()) - g.begin() <= 16);
    }

    // Perplexity through our engine: original and result (and the RTN baseline).
    page->evalContextSpin()->setValue(128);
    page->evalChunksSpin()->setValue(4);
    QSignalSpy evaluated(page, &CalibratedExportPage::evaluationFinished);
    QTest::mouseClick(page->evaluateButton(), Qt::LeftButton);
    QVERIFY(evaluated.wait(300000));
    QTableWidget* et = page->evalTable();
    QCOMPARE(et->rowCount(), 3);
    auto ppl = [et](int row) { return et->item(row, CalibratedExportPage::EvalPpl)->data(Qt::UserRole).toDouble(); };
    QFile text(QStringLiteral(QZ_RESOURCES_DIR "/texts/shakespeare-valid.txt"));
    QVERIFY(text.open(QIODevice::ReadOnly));
    const QByteArray bytes = text.readAll();
    qz::EvalParams ep;
    ep.nCtx = 128;
    ep.nChunks = 4;
    auto direct = qz::evaluatePerplexity(*m_model, std::string_view(bytes.constData(), size_t(bytes.size())), ep);
    QVERIFY(direct.ok());
    QCOMPARE(ppl(0), direct->ppl);
    const double rel = ppl(1) / ppl(0) - 1;
    qInfo("PPL original %.4f, GPTQ 4-bit g128 %.4f (%+.2f %%), RTN %.4f", ppl(0), ppl(1), 100 * rel, ppl(2));
    QVERIFY2(std::isfinite(rel) && std::abs(rel) < 0.05, qPrintable(QString::number(rel)));
    QVERIFY(et->item(1, CalibratedExportPage::EvalKld)->data(Qt::UserRole).toDouble() > 0);

    // Handing the variants to the Evaluate workspace.
    QSignalSpy variants(&panel, &ExportPanel::variantReady);
    QTest::mouseClick(page->sendButton(), Qt::LeftButton);
    QCOMPARE(variants.count(), 2);
    QVERIFY(variants.first().first().toString().startsWith(QStringLiteral("GPTQ 4-bit")));

    // A picture of the page for the report (not asserted).
    page->tabs()->setCurrentIndex(1);
    QTest::qWait(100);
    panel.grab().save(QStringLiteral(QZ_BINARY_DIR "/calibrated_export_gptq.png"));
}

void TestCalibratedExport::gptqCancelThenResume() {
    QVERIFY(!m_fullReports.empty());
    ExportPanel panel;
    panel.show();
    panel.setModel(m_model);
    QVERIFY(panel.setFormat(QStringLiteral("gptq")));
    GptqExportPage* page = panel.gptqPage();
    QTemporaryDir tmp;
    const QString out = tmp.filePath(QStringLiteral("resumed"));
    configureGptq(page, out, 4, 64);
    QSignalSpy layers(page, &CalibratedExportPage::layerReported);
    QSignalSpy cancelled(page, &CalibratedExportPage::exportCancelled);
    QTest::mouseClick(page->exportButton(), Qt::LeftButton);
    QVERIFY(layers.wait(300000));
    QTest::mouseClick(page->cancelButton(), Qt::LeftButton);
    // Idle at once, without waiting for the worker.
    QCOMPARE(cancelled.count(), 1);
    QVERIFY(page->exportButton()->isEnabled());
    QVERIFY(!page->cancelButton()->isEnabled());
    QVERIFY(panel.formatBox()->isEnabled());
    QCOMPARE(page->etaLabel()->text(), QStringLiteral("cancelled"));
    QCOMPARE(page->progressBar()->value(), 0);
    page->job()->waitForIdle();
    QVERIFY2(!QFileInfo::exists(out), "a cancelled export must not create the destination");
    QVERIFY(!page->hasResult());
    const int before = layers.count();
    QVERIFY(before >= 1 && before < 28);

    // Again into the same folder: the finished layers are reused.
    QSignalSpy finished(page, &CalibratedExportPage::exportFinished);
    QTest::mouseClick(page->exportButton(), Qt::LeftButton);
    QVERIFY(finished.wait(300000));
    auto result = page->result();
    QVERIFY(result);
    QVERIFY2(page->resumedLayers() >= before, qPrintable(QStringLiteral("%1 < %2").arg(page->resumedLayers()).arg(before)));
    QCOMPARE(page->resumedLayers(), result->resumedLayers);
    QVERIFY(page->summary()->text().contains(QStringLiteral("Resumed %1 layer").arg(page->resumedLayers())));
    QVERIFY(QFileInfo::exists(out + QStringLiteral("/quantize_config.json")));
    QCOMPARE(page->chart()->barCount(0), 28);
    // Same numbers as the uninterrupted run of gptqEndToEnd (same settings).
    QCOMPARE(result->layers.size(), m_fullReports.size());
    for (const auto& l : result->layers) {
        auto it = std::find_if(m_fullReports.begin(), m_fullReports.end(), [&](const auto& f) { return f.name == l.name; });
        QVERIFY(it != m_fullReports.end());
        QCOMPARE(l.relErr, it->relErr);
        QCOMPARE(l.relErrRtn, it->relErrRtn);
        QCOMPARE(page->chart()->value(0, page->chart()->layers().indexOf(QString::fromStdString(l.name))), l.relErr);
    }
}

void TestCalibratedExport::checkHistograms(CalibratedExportPage* page, const QString& layer) {
    QSignalSpy shown(page, &CalibratedExportPage::layerShown);
    const int i = page->layerBox()->findText(layer);
    QVERIFY2(i >= 0, qPrintable(layer));
    if (page->layerBox()->currentIndex() == i) page->showLayer(layer);
    else page->layerBox()->setCurrentIndex(i);
    QTRY_COMPARE_WITH_TIMEOUT(shown.isEmpty() ? QString() : shown.last().first().toString(), layer, 30000);
    const auto& series = page->histogram()->series();
    QCOMPARE(series.size(), 2);
    const qz::TensorInfo* t = m_model->find(layer.toStdString());
    QVERIFY(t);
    auto original = qz::readTensorF32(*m_model, *t);
    QVERIFY(original.ok());
    const qz::Histogram& h0 = series[0].histogram;
    const qz::Histogram& h1 = series[1].histogram;
    QCOMPARE(h0.total(), uint64_t(original->size()));
    QCOMPARE(h1.total(), uint64_t(original->size()));
    QCOMPARE(h0.counts, qz::histogramF32(original->data(), original->size(), h0.bins(), h0.lo, h0.hi).counts);
    const auto& deq = page->resultOverrides()->at(layer.toStdString());
    QCOMPARE(h1.counts, qz::histogramF32(deq.data(), deq.size(), h1.bins(), h1.lo, h1.hi).counts);
    QVERIFY(h0.counts != h1.counts);
}

double TestCalibratedExport::evaluatePage(CalibratedExportPage* page, double* original) {
    page->evalContextSpin()->setValue(128);
    page->evalChunksSpin()->setValue(4);
    QSignalSpy evaluated(page, &CalibratedExportPage::evaluationFinished);
    QTest::mouseClick(page->evaluateButton(), Qt::LeftButton);
    if (!evaluated.wait(300000)) return std::nan("");
    QTableWidget* et = page->evalTable();
    *original = et->item(0, CalibratedExportPage::EvalPpl)->data(Qt::UserRole).toDouble();
    return et->item(1, CalibratedExportPage::EvalPpl)->data(Qt::UserRole).toDouble();
}

void TestCalibratedExport::exl2EndToEnd() {
    ExportPanel panel;
    panel.resize(1400, 1000);
    panel.show();
    panel.setModel(m_model);
    QVERIFY(panel.setFormat(QStringLiteral("exl2")));
    Exl2ExportPage* page = panel.exl2Page();
    QVERIFY(page->isVisible());
    QVERIFY(m_exl2Dir.isValid());
    const QString out = m_exl2Dir.filePath(QStringLiteral("bard-exl2"));
    configureExl2(page, out);
    QSignalSpy finished(page, &CalibratedExportPage::exportFinished);
    QSignalSpy steps(page->job(), &BackgroundJob::progress);
    QTest::mouseClick(page->exportButton(), Qt::LeftButton);
    QVERIFY(!panel.formatBox()->isEnabled());
    QVERIFY(finished.wait(600000));
    // The phases were shown.
    QStringList seen;
    for (const auto& s : steps) seen << s.at(1).toString();
    QVERIFY2(seen.join(QLatin1Char('|')).contains(QStringLiteral("measur")), qPrintable(seen.join(QLatin1Char('|'))));
    bool eta = false;
    for (const auto& s : steps) eta = eta || s.at(2).toDouble() >= 0;
    QVERIFY(eta);  // an ETA once a little of the work is done

    auto result = page->result();
    QVERIFY(result);
    LayerBarChart* chart = page->chart();
    const int n = int(result->layers.size());
    QCOMPARE(n, 4 * 7 + 1);  // every decoder linear and lm_head
    QCOMPARE(chart->layerCount(), n);
    QCOMPARE(chart->barCount(0), n);
    const QVector<double> bars = chart->barValues(0);
    double bits = 0, numel = 0;
    for (const auto& l : result->layers) {
        const int i = chart->layers().indexOf(QString::fromStdString(l.name));
        QVERIFY2(i >= 0, l.name.c_str());
        QCOMPARE(chart->value(0, i), l.bpw);
        QCOMPARE(bars[i], l.bpw);
        QVERIFY(l.bpw >= 2.0 && l.bpw <= 8.5);
        if (l.name != "lm_head.weight") {
            bits += l.bpw * double(l.out) * double(l.in);
            numel += double(l.out) * double(l.in);
        }
    }
    QCOMPARE(chart->referenceLine(QStringLiteral("target")), 4.0);
    QCOMPARE(chart->referenceLine(QStringLiteral("achieved")), result->achievedBpw);
    // The achieved figure is what the bars add up to, and meets the target.
    QVERIFY2(std::abs(bits / numel - result->achievedBpw) < 1e-9,
             qPrintable(QStringLiteral("%1 vs %2").arg(bits / numel, 0, 'g', 12).arg(result->achievedBpw, 0, 'g', 12)));
    QVERIFY2(result->achievedBpw <= 4.0 + 1e-9 && result->achievedBpw > 4.0 - 0.02,
             qPrintable(QString::number(result->achievedBpw)));
    QVERIFY(page->summary()->text().contains(QStringLiteral("achieved %1").arg(result->achievedBpw, 0, 'f', 3)));
    // The folder.
    QVERIFY(QFileInfo(out).isDir());
    QCOMPARE(readJson(out + QStringLiteral("/config.json"))
                 .value(QStringLiteral("quantization_config")).toObject().value(QStringLiteral("quant_method")).toString(),
             QStringLiteral("exl2"));
    QVERIFY(QFileInfo::exists(out + QStringLiteral("/measurement.json")));
    QCOMPARE(QDir(m_exl2Dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
             QStringList{QStringLiteral("bard-exl2")});
    QVERIFY(page->exportButton()->isEnabled());
    QVERIFY(panel.formatBox()->isEnabled());
    m_exl2Reports = result->layers;

    checkHistograms(page, QStringLiteral("model.layers.2.self_attn.o_proj.weight"));
    m_exl2Hist = page->histogram()->series().at(1).histogram;
    double orig = 0;
    const double ppl = evaluatePage(page, &orig);
    m_exl2Ppl = ppl;
    qInfo("PPL original %.4f, EXL2 4.0 bpw %.4f (%+.2f %%), achieved %.4f bpw", orig, ppl, 100 * (ppl / orig - 1),
          result->achievedBpw);
    QVERIFY2(std::isfinite(ppl) && std::abs(ppl / orig - 1) < 0.05, qPrintable(QString::number(ppl)));

    page->tabs()->setCurrentIndex(0);
    QTest::qWait(100);
    panel.grab().save(QStringLiteral(QZ_BINARY_DIR "/calibrated_export_exl2.png"));
}

void TestCalibratedExport::exl2CancelThenReuseMeasurement() {
    QVERIFY(!m_exl2Reports.empty());
    ExportPanel panel;
    panel.show();
    panel.setModel(m_model);
    QVERIFY(panel.setFormat(QStringLiteral("exl2")));
    Exl2ExportPage* page = panel.exl2Page();
    QTemporaryDir tmp;
    const QString out = tmp.filePath(QStringLiteral("c"));
    configureExl2(page, out);
    QSignalSpy steps(page->job(), &BackgroundJob::progress);
    QSignalSpy cancelled(page, &CalibratedExportPage::exportCancelled);
    QTest::mouseClick(page->exportButton(), Qt::LeftButton);
    QVERIFY(steps.wait(120000));
    QTest::mouseClick(page->cancelButton(), Qt::LeftButton);
    QCOMPARE(cancelled.count(), 1);
    QVERIFY(page->exportButton()->isEnabled());
    QVERIFY(!page->cancelButton()->isEnabled());
    QVERIFY(panel.formatBox()->isEnabled());
    page->job()->waitForIdle();
    QVERIFY(!QFileInfo::exists(out));
    QVERIFY(!page->hasResult());

    // Another folder, given the first run's measurement: nothing is measured, the same settings result.
    // The dequantized weights are not kept this time: histograms and evaluation read the folder.
    page->keepCheck()->setChecked(false);
    const QString out2 = tmp.filePath(QStringLiteral("reused"));
    page->outputEdit()->setText(out2);
    page->measurementEdit()->setText(m_exl2Dir.filePath(QStringLiteral("bard-exl2/measurement.json")));
    QSignalSpy finished(page, &CalibratedExportPage::exportFinished);
    QTest::mouseClick(page->exportButton(), Qt::LeftButton);
    QVERIFY(finished.wait(600000));
    auto result = page->result();
    QVERIFY(result);
    QVERIFY(result->measurementReused);
    QCOMPARE(result->measuredModules, 0);
    QVERIFY(page->summary()->text().contains(QStringLiteral("measurement reused")));
    QCOMPARE(result->layers.size(), m_exl2Reports.size());
    for (size_t i = 0; i < result->layers.size(); ++i) {
        QCOMPARE(result->layers[i].name, m_exl2Reports[i].name);
        QCOMPARE(result->layers[i].setting, m_exl2Reports[i].setting);
    }
    QVERIFY(QFileInfo::exists(out2 + QStringLiteral("/config.json")));

    QVERIFY(page->hasResult());
    QVERIFY(!page->resultOverrides());
    QVERIFY(page->resultFolder());
    QCOMPARE(page->layerBox()->count(), int(m_exl2Reports.size()));
    const QString layer = QStringLiteral("model.layers.2.self_attn.o_proj.weight");
    QSignalSpy shown(page, &CalibratedExportPage::layerShown);
    page->layerBox()->setCurrentIndex(page->layerBox()->findData(layer));
    QTRY_COMPARE_WITH_TIMEOUT(shown.isEmpty() ? QString() : shown.last().first().toString(), layer, 30000);
    const qz::Histogram& h = page->histogram()->series().at(1).histogram;
    QCOMPARE(h.lo, m_exl2Hist.lo);
    QCOMPARE(h.hi, m_exl2Hist.hi);
    QCOMPARE(h.counts, m_exl2Hist.counts);
    double orig = 0;
    const double ppl = evaluatePage(page, &orig);
    QVERIFY2(std::abs(ppl / m_exl2Ppl - 1) < 1e-5, qPrintable(QStringLiteral("%1 vs %2").arg(ppl).arg(m_exl2Ppl)));
}

void TestCalibratedExport::variantsReachEvaluateWorkspace() {
    MainWindow w;
    QSignalSpy opened(&w, &MainWindow::modelOpened);
    w.openPath(QStringLiteral(QZ_TEST_DATA "/models/bard-llama"));
    QVERIFY(opened.wait(30000));
    auto* exportPanel = qobject_cast<ExportPanel*>(w.workspaces()->workspace(QStringLiteral("export")));
    auto* evaluatePanel = qobject_cast<EvaluatePanel*>(w.workspaces()->workspace(QStringLiteral("evaluate")));
    QVERIFY(exportPanel && evaluatePanel);
    QVERIFY(exportPanel->setFormat(QStringLiteral("gptq")));
    GptqExportPage* page = exportPanel->gptqPage();
    QTemporaryDir tmp;
    configureGptq(page, tmp.filePath(QStringLiteral("mw")), 2, 32);
    page->rtnCheck()->setChecked(false);
    QSignalSpy finished(page, &CalibratedExportPage::exportFinished);
    QVERIFY(page->start());
    QVERIFY(finished.wait(300000));
    const int before = evaluatePanel->variantCount();
    QVERIFY(page->sendButton()->isEnabled());
    QTest::mouseClick(page->sendButton(), Qt::LeftButton);
    QCOMPARE(evaluatePanel->variantCount(), before + 1);
    QCOMPARE(evaluatePanel->table()->rowCount(), before + 2);  // the original and the variants
    QVERIFY(evaluatePanel->table()->item(before + 1, EvaluatePanel::ColName)->text().startsWith(QStringLiteral("GPTQ 4-bit")));
    // A result not kept in memory arrives too (read from its folder when evaluated).
    page->keepCheck()->setChecked(false);
    page->outputEdit()->setText(tmp.filePath(QStringLiteral("mw-folder")));
    QVERIFY(page->start());
    QVERIFY(finished.wait(300000));
    QVERIFY(page->resultFolder());
    QTest::mouseClick(page->sendButton(), Qt::LeftButton);
    QCOMPARE(evaluatePanel->variantCount(), before + 2);
    QVERIFY(evaluatePanel->table()->item(before + 2, EvaluatePanel::ColName)->text().startsWith(QStringLiteral("GPTQ 4-bit")));
}

void TestCalibratedExport::refusesNonHfModel() {
    ExportPanel panel;
    auto gguf = open("stories260K/stories260K.gguf");
    QVERIFY(gguf);
    panel.setModel(gguf);
    QTemporaryDir tmp;
    for (const char* id : {"gptq", "exl2"}) {
        QVERIFY(panel.setFormat(QString::fromLatin1(id)));
        CalibratedExportPage* page = QString::fromLatin1(id) == QLatin1String("gptq")
                                         ? static_cast<CalibratedExportPage*>(panel.gptqPage())
                                         : static_cast<CalibratedExportPage*>(panel.exl2Page());
        QVERIFY(page->summary()->text().contains(QStringLiteral("Hugging Face")));
        page->outputEdit()->setText(tmp.filePath(QString::fromLatin1(id)));
        QVERIFY(!page->start());
        QVERIFY(page->summary()->text().startsWith(QStringLiteral("Cannot export")));
        QVERIFY(page->exportButton()->isEnabled());
        QVERIFY(!page->cancelButton()->isEnabled());
        QVERIFY(!QFileInfo::exists(tmp.filePath(QString::fromLatin1(id))));
    }
}

namespace {
// A GPTQ page whose result can be set directly (no export run).
class ResultPage : public GptqExportPage {
public:
    using CalibratedExportPage::setResult;
};
bool writeBytes(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    return f.open(QIODevice::WriteOnly) && f.write(bytes) == bytes.size();
}
}  // namespace

void TestCalibratedExport::refusesBadCalibrationAndMeasurement() {
    QTemporaryDir tmp;
    const QString empty = tmp.filePath(QStringLiteral("empty.txt"));
    const QString binary = tmp.filePath(QStringLiteral("binary.txt"));
    const QString huge = tmp.filePath(QStringLiteral("huge.txt"));
    const QString missing = tmp.filePath(QStringLiteral("missing.txt"));
    QVERIFY(writeBytes(empty, QByteArray()));
    QVERIFY(writeBytes(binary, QByteArray("some text") + QByteArray(3, '\0') + QByteArray("more")));
    {
        QFile f(huge);  // sparse: 65 MiB without writing them
        QVERIFY(f.open(QIODevice::WriteOnly));
        QVERIFY(f.resize(CalibratedExportPage::kMaxCalibrationBytes + 1024));
    }
    struct Case {
        QString path, reason;
    };
    const Case cases[] = {{missing, QStringLiteral("does not exist")},
                          {empty, QStringLiteral("is empty")},
                          {binary, QStringLiteral("not a text file")},
                          {huge, QStringLiteral("at most 64 MiB")},
                          {tmp.path(), QStringLiteral("cannot be read")}};
    ExportPanel panel;
    panel.setModel(m_model);
    for (const char* id : {"gptq", "exl2"}) {
        QVERIFY(panel.setFormat(QString::fromLatin1(id)));
        CalibratedExportPage* page = QString::fromLatin1(id) == QLatin1String("gptq")
                                         ? static_cast<CalibratedExportPage*>(panel.gptqPage())
                                         : static_cast<CalibratedExportPage*>(panel.exl2Page());
        const QString out = tmp.filePath(QStringLiteral("out-") + QString::fromLatin1(id));
        page->outputEdit()->setText(out);
        for (const Case& c : cases) {
            page->setCalibrationPath(c.path);
            QVERIFY(!page->start());
            const QString text = page->summary()->text();
            QVERIFY2(text.startsWith(QStringLiteral("Cannot export")) && text.contains(c.path) &&
                         text.contains(c.reason),
                     qPrintable(text));
            QVERIFY(page->exportButton()->isEnabled());
            QVERIFY(!page->isRunning());
            QVERIFY(!QFileInfo::exists(out));
        }
    }
    // EXL2's measurement.json: refused before the run when missing / empty / binary.
    Exl2ExportPage* exl2 = panel.exl2Page();
    QVERIFY(panel.setFormat(QStringLiteral("exl2")));
    const QString out = tmp.filePath(QStringLiteral("m"));
    configureExl2(exl2, out);
    for (const Case& c : {cases[0], cases[1], cases[2]}) {
        exl2->measurementEdit()->setText(c.path);
        QVERIFY(!exl2->start());
        QVERIFY2(exl2->summary()->text().contains(c.reason), qPrintable(exl2->summary()->text()));
        QVERIFY(!exl2->isRunning());
    }
    // A malformed one reaches the core, which fails the run with a message; the page is idle again.
    const QString bad = tmp.filePath(QStringLiteral("measurement.json"));
    QVERIFY(writeBytes(bad, QByteArray("{\"measurement\": [1, 2, \"three\"")));
    exl2->measurementEdit()->setText(bad);
    QSignalSpy failed(exl2, &CalibratedExportPage::exportFailed);
    QVERIFY(exl2->start());
    QVERIFY(failed.wait(60000));
    QVERIFY(!failed.first().first().toString().isEmpty());
    QVERIFY(exl2->summary()->text().startsWith(QStringLiteral("Export failed")));
    QVERIFY(exl2->exportButton()->isEnabled());
    QVERIFY(!exl2->hasResult());
    exl2->job()->waitForIdle();
    QVERIFY(!QFileInfo::exists(out));
}

// The page shows the run's memory estimate, which follows the windows × tokens, and refuses to start
// (politely, nothing written) when the estimate exceeds the available memory.
void TestCalibratedExport::memoryEstimateShownAndChecked() {
    GptqExportPage page;
    page.setModel(m_model);
    QVERIFY2(page.memoryLabel()->text().contains(QStringLiteral("calibration states")),
             qPrintable(page.memoryLabel()->text()));
    page.keepCheck()->setChecked(false);
    page.samplesSpin()->setValue(4);
    const uint64_t small = page.memoryEstimate().anonBytes();
    page.samplesSpin()->setValue(400);
    const uint64_t big = page.memoryEstimate().anonBytes();
    // 396 more windows of seq-len tokens × hidden × 4 bytes of F32 states.
    auto hp = qz::readInferHParams(*m_model);
    QVERIFY(hp);
    QCOMPARE(big - small, uint64_t(396) * uint64_t(page.seqLenSpin()->value()) * uint64_t(hp->nEmbd) * 4u);
    QTemporaryDir tmp;
    page.outputEdit()->setText(tmp.filePath(QStringLiteral("out")));
    page.setAvailableMemoryOverride(1 << 20);  // 1 MiB: nothing fits
    QVERIFY(!page.start());
    QVERIFY2(page.summary()->text().startsWith(QStringLiteral("Not enough memory")),
             qPrintable(page.summary()->text()));
    QVERIFY(!page.isRunning());
    QVERIFY(!QFileInfo::exists(tmp.filePath(QStringLiteral("out"))));
}

void TestCalibratedExport::keepDefaultFollowsModelSize() {
    GptqExportPage gptq;
    Exl2ExportPage exl2;
    for (CalibratedExportPage* page :
         {static_cast<CalibratedExportPage*>(&gptq), static_cast<CalibratedExportPage*>(&exl2)}) {
        QCheckBox* keep = page == &gptq ? gptq.keepCheck() : exl2.keepCheck();
        page->setModel(m_model);  // bard-llama: a few million parameters
        QVERIFY(keep->isChecked());
        QVERIFY2(keep->text().contains(QStringLiteral("MiB for this model")), qPrintable(keep->text()));
        QVERIFY(keep->text().contains(QStringLiteral("off by default above 500 M parameters")));
        page->setKeepDefaultMaxParameters(m_model->totalParameters() - 1);  // "a bigger model"
        page->setModel(m_model);
        QVERIFY(!keep->isChecked());
        page->setKeepDefaultMaxParameters(m_model->totalParameters());
        page->setModel(m_model);
        QVERIFY(keep->isChecked());
    }
    // The RTN baseline keeps a second set: the label says so; the size is 4 bytes per parameter and set.
    gptq.rtnCheck()->setChecked(true);
    QVERIFY2(gptq.keepCheck()->text().contains(QStringLiteral("× 2 variants")),
             qPrintable(gptq.keepCheck()->text()));
    const double mib2 = 8.0 * double(m_model->totalParameters()) / 1048576.0;
    QVERIFY2(gptq.keepCheck()->text().contains(QStringLiteral("≈ %1 MiB").arg(mib2, 0, 'f', 0)),
             qPrintable(gptq.keepCheck()->text()));
    gptq.rtnCheck()->setChecked(false);
    QVERIFY(!gptq.keepCheck()->text().contains(QStringLiteral("variants")));
}

void TestCalibratedExport::gptqNotKeptReadsTheFolder() {
    // The same small GPTQ run twice, the dequantized weights kept and not kept.
    const QString layer = QStringLiteral("model.layers.1.mlp.down_proj.weight");
    QTemporaryDir tmp;
    struct Seen {
        qz::Histogram hist;
        double ppl = 0;
    } seen[2];
    for (int keep = 1; keep >= 0; --keep) {
        ExportPanel panel;
        panel.show();
        panel.setModel(m_model);
        QVERIFY(panel.setFormat(QStringLiteral("gptq")));
        GptqExportPage* page = panel.gptqPage();
        configureGptq(page, tmp.filePath(keep ? QStringLiteral("kept") : QStringLiteral("folder")), 2, 32);
        page->rtnCheck()->setChecked(false);
        page->keepCheck()->setChecked(keep != 0);
        QSignalSpy finished(page, &CalibratedExportPage::exportFinished);
        QVERIFY(page->start());
        QVERIFY(finished.wait(300000));
        QVERIFY(page->hasResult());
        QCOMPARE(page->resultOverrides() != nullptr, keep != 0);
        QCOMPARE(page->resultFolder() != nullptr, keep == 0);
        QCOMPARE(page->layerBox()->count(), 28);
        QSignalSpy shown(page, &CalibratedExportPage::layerShown);
        page->layerBox()->setCurrentIndex(page->layerBox()->findData(layer));
        QTRY_COMPARE_WITH_TIMEOUT(shown.isEmpty() ? QString() : shown.last().first().toString(), layer, 30000);
        seen[keep].hist = page->histogram()->series().at(1).histogram;
        QCOMPARE(seen[keep].hist.total(), uint64_t(256 * 768));
        double orig = 0;
        seen[keep].ppl = evaluatePage(page, &orig);
        QVERIFY(std::isfinite(seen[keep].ppl) && seen[keep].ppl > 0);
        QCOMPARE(page->evalTable()->rowCount(), 2);
        if (!keep) {
            QSignalSpy plain(&panel, &ExportPanel::variantReady), folder(&panel, &ExportPanel::evalVariantReady);
            QTest::mouseClick(page->sendButton(), Qt::LeftButton);
            QCOMPARE(plain.count(), 0);
            QCOMPARE(folder.count(), 1);
        }
    }
    // Read from the folder's codes: the kept run's dequantized weights, and the same perplexity.
    QCOMPARE(seen[0].hist.lo, seen[1].hist.lo);
    QCOMPARE(seen[0].hist.hi, seen[1].hist.hi);
    QCOMPARE(seen[0].hist.counts, seen[1].hist.counts);
    qInfo("PPL kept %.6f, read from the folder %.6f", seen[1].ppl, seen[0].ppl);
    QVERIFY2(std::abs(seen[0].ppl / seen[1].ppl - 1) < 1e-5,
             qPrintable(QStringLiteral("%1 vs %2").arg(seen[0].ppl).arg(seen[1].ppl)));
}

void TestCalibratedExport::staleHistogramDropped() {
    ResultPage page;
    page.setModel(m_model);
    const QString layer = QStringLiteral("model.layers.1.mlp.down_proj.weight");
    auto makeResult = [&] {
        auto w = qz::readTensorF32(*m_model, *m_model->find(layer.toStdString()));
        qz::WeightOverrides ov;
        std::vector<float> half(w->begin(), w->end());
        for (float& v : half) v *= 0.5f;
        ov[layer.toStdString()] = std::move(half);
        return std::make_shared<const qz::WeightOverrides>(std::move(ov));
    };
    // Control: the histograms of a result are shown.
    QSignalSpy shown(&page, &CalibratedExportPage::layerShown);
    page.setResult(QStringLiteral("x"), makeResult(), QString(), nullptr, QStringLiteral("result"), 0, 0);
    QVERIFY(shown.wait(30000));
    QCOMPARE(page.histogram()->series().size(), 2);
    // Again, and another model is opened before the worker's answer is delivered: it is dropped.
    shown.clear();
    page.setResult(QStringLiteral("x"), makeResult(), QString(), nullptr, QStringLiteral("result"), 0, 0);
    auto other = open("bard-llama");
    QVERIFY(other);
    page.setModel(other);
    QTest::qWait(1500);
    QCOMPARE(shown.count(), 0);
    QCOMPARE(page.histogram()->series().size(), 0);
    QVERIFY(!page.hasResult());
}

void TestCalibratedExport::finishAfterCancelIsReported() {
    GptqExportPage page;
    page.setModel(m_model);
    QTemporaryDir tmp;
    page.outputEdit()->setText(tmp.filePath(QStringLiteral("late")));
    // A work that, like a core past its last progress report, ignores the cancel and succeeds.
    std::atomic<bool> go{false}, entered{false};
    QSignalSpy cancelled(page.job(), &BackgroundJob::cancelled);
    QSignalSpy late(page.job(), &BackgroundJob::finishedAfterCancel);
    QSignalSpy finished(page.job(), &BackgroundJob::finished);
    QVERIFY(page.job()->start([&go, &entered](const BackgroundJob::Context& ctx) {
        entered = true;
        while (!go.load()) QThread::msleep(5);
        ctx.post([] {});  // dropped: the job is no longer current
        return qz::okStatus();
    }));
    // Under way: a job cancelled before it has started never runs.
    QTRY_VERIFY_WITH_TIMEOUT(entered.load(), 10000);
    page.cancel();
    QCOMPARE(cancelled.count(), 1);
    QVERIFY(!page.summary()->text().contains(QStringLiteral("not created")));
    go = true;
    QVERIFY(late.wait(10000));
    QCOMPARE(finished.count(), 0);  // still not a normal finish: no result on the page
    QVERIFY(!page.hasResult());
    QVERIFY2(page.summary()->text().contains(QStringLiteral("finished")), qPrintable(page.summary()->text()));
    QVERIFY(page.log()->toPlainText().contains(QStringLiteral("already got past its last cancel point")));
    // A job that honours the cancel emits nothing more.
    go = false;
    late.clear();
    QVERIFY(page.job()->start([&go](const BackgroundJob::Context& ctx) {
        while (!go.load()) QThread::msleep(5);
        return ctx.progress(qz::ProgressInfo{0.5, "x"}) ? qz::okStatus() : qz::Status(qz::cancelledError());
    }));
    page.cancel();
    go = true;
    page.job()->waitForIdle();
    QTest::qWait(100);
    QCOMPARE(late.count(), 0);
}

QTEST_MAIN(TestCalibratedExport)
#include "test_calibrated_export.moc"

// The memory estimate of an evaluation, offscreen, on the Evaluate panel and the Compare workspace: the
// label shows the figure of the core's estimate worked out here from the model's hyper-parameters and
// the settings (context, chunks, threads, the text's size, the variants' replaced weights counted from
// the model's tensors that no row source serves), follows the context and the variants, and a start with
// too little available memory is refused with the message while no job starts.
#include <QFileInfo>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTest>

#include "app_options.h"
#include "common/parallel.h"
#include "compare_workspace.h"
#include "evaluate_panel.h"
#include "infer/hparams.h"
#include "jobs/memory_estimate.h"
#include "jobs/quantize_job.h"
#include "variants/variants.h"

using namespace qz::ui;

namespace {
const char* kGguf = QZ_TEST_DATA "/models/stories260K/stories260K.gguf";
const char* kHf = QZ_TEST_DATA "/models/stories260K/hf";
constexpr uint64_t kPlenty = 64'000'000'000ull;

ModelPtr open(const std::string& path) {
    auto m = qz::openModel(path);
    return m.ok() ? ModelPtr(*m) : nullptr;
}

// The label's figure for an estimate: MB (10^6) below 10^9 bytes, else GB with two decimals.
QString figure(const qz::MemoryEstimate& e) {
    const uint64_t b = e.anonBytes() + qz::kMemoryMargin;
    return b < 1'000'000'000ull ? QString::number(double(b) * 1e-6, 'f', 0) + QStringLiteral(" MB")
                                : QString::number(double(b) * 1e-9, 'f', 2) + QStringLiteral(" GB");
}

uint64_t textBytes() {
    return uint64_t(QFileInfo(sampleTextPath()).size());
}

// Values of every 2-D tensor (what absmax over the whole model replaces).
uint64_t matrixValues(const qz::Model& m) {
    uint64_t n = 0;
    for (const auto& t : m.tensors)
        if (t.shape.size() == 2) n += uint64_t(t.shape[0]) * uint64_t(t.shape[1]);
    return n;
}
} // namespace

class TestEvaluateMemory : public QObject {
    Q_OBJECT
  private slots:
    void evaluatePanelShowsAndRefuses();
    void compareWorkspaceShowsAndRefuses();
};

void TestEvaluateMemory::evaluatePanelShowsAndRefuses() {
    EvaluatePanel panel;
    panel.show();
    auto model = open(kGguf);
    QVERIFY(model);
    auto hp = qz::readInferHParams(*model);
    QVERIFY(hp);
    panel.setAvailableMemoryOverride(kPlenty);
    panel.setModel(model);
    panel.setContext(64);
    panel.setChunks(4);

    qz::EvalMemorySettings s;
    s.nCtx = 64;
    s.nChunks = 4;
    s.threads = qz::defaultThreadCount();
    s.textBytes = textBytes();
    const auto alone = qz::estimateEvaluation(*hp, model->totalBytes(), s);
    QVERIFY2(panel.memoryLabel()->text().contains(figure(alone)), qPrintable(panel.memoryLabel()->text()));
    QVERIFY(panel.memoryLabel()->text().contains(QStringLiteral("64.00 GB available")));
    QVERIFY(panel.memoryLabel()->toolTip().contains(QStringLiteral("KV cache")));

    // A longer context: the label follows.
    panel.setContext(2048);
    s.nCtx = 2048;
    const auto longer = qz::estimateEvaluation(*hp, model->totalBytes(), s);
    QVERIFY(figure(longer) != figure(alone));
    QVERIFY2(panel.memoryLabel()->text().contains(figure(longer)), qPrintable(panel.memoryLabel()->text()));
    panel.setThreads(1);
    s.threads = 1;
    const auto oneThread = qz::estimateEvaluation(*hp, model->totalBytes(), s);
    QVERIFY(panel.memoryLabel()->text().contains(figure(oneThread)));

    // A fake-quantized result: its rows are re-made while the engine multiplies (row sources), so no F32
    // copy of a llama's weights is made (every replaced tensor here is 2-D and stored [out, in]); what is
    // added is the original's log-probabilities kept for the KL-divergence.
    qz::QuantizeParams qp;
    qp.spec.bits = 4;
    auto qr = qz::runQuantize(*model, qp, {});
    QVERIFY(qr);
    uint64_t quantized = 0;
    for (const auto& t : qr->tensors)
        quantized += t.numel;
    QCOMPARE(quantized, matrixValues(*model));
    panel.setQuantizeResult(model, std::make_shared<const qz::QuantizeResult>(std::move(*qr)));
    s.variants.push_back({0, false, 0});
    s.keepMadeOverrides = true;
    const auto withVariant = qz::estimateEvaluation(*hp, model->totalBytes(), s);
    QVERIFY(withVariant.anonBytes() > oneThread.anonBytes());
    QVERIFY2(panel.memoryLabel()->text().contains(figure(withVariant)),
             qPrintable(panel.memoryLabel()->text()));
    const QString tip = panel.memoryLabel()->toolTip();
    QVERIFY2(!tip.contains(QStringLiteral("variant weights made")) && !tip.contains(QStringLiteral("engine's copy")) &&
                 tip.contains(QStringLiteral("log-probabilities")),
             qPrintable(tip));

    // Too little memory: refused with the message, no job.
    panel.setAvailableMemoryOverride(100'000'000);
    QSignalSpy done(&panel, &EvaluatePanel::evaluationFinished);
    QVERIFY(!panel.evaluate());
    QVERIFY(!panel.runner()->isRunning());
    QVERIFY(!panel.cancelButton()->isEnabled());
    const QString status = panel.status()->text();
    QVERIFY2(status.startsWith(QStringLiteral("Not enough memory")), qPrintable(status));
    QVERIFY2(status.contains(QStringLiteral("0.10 GB of memory is available")), qPrintable(status));
    QVERIFY(status.contains(QStringLiteral("fewer chunks")));
    QTest::qWait(50);
    QCOMPARE(done.count(), 0);

    // Enough again: it starts.
    panel.setAvailableMemoryOverride(kPlenty);
    panel.setContext(64);
    QVERIFY(panel.evaluate());
    QVERIFY(done.wait(240000));
}

void TestEvaluateMemory::compareWorkspaceShowsAndRefuses() {
    CompareWorkspace w;
    w.show();
    auto model = open(kHf);
    QVERIFY(model);
    auto hp = qz::readInferHParams(*model);
    QVERIFY(hp);
    w.setAvailableMemoryOverride(kPlenty);
    w.setModel(model);
    w.setContext(128);
    w.setChunks(8);
    w.setThreads(1);
    QVERIFY(w.memoryLabel()->text().isEmpty()); // nothing selected: nothing to evaluate

    auto spec = qz::parseMethodSpec("absmax:8:tensor");
    QVERIFY(spec);
    auto v = qz::makeFakeQuantVariant(*model, *spec);
    QVERIFY(v);
    w.addVariant(std::move(*v));
    QCOMPARE(w.selected(), QList<int>{0});

    qz::EvalMemorySettings s;
    s.nCtx = 128;
    s.nChunks = 8;
    s.threads = 1;
    s.textBytes = textBytes();
    // Evaluated from row sources: no F32 copy of the llama's 2-D weights, only the log-probabilities.
    s.variants.push_back({0, false, 0});
    const auto e = qz::estimateEvaluation(*hp, model->totalBytes(), s);
    QVERIFY2(w.memoryLabel()->text().contains(figure(e)), qPrintable(w.memoryLabel()->text()));
    QVERIFY(!w.memoryLabel()->toolTip().contains(QStringLiteral("variant weights made")));
    QVERIFY(w.memoryLabel()->toolTip().contains(QStringLiteral("log-probabilities")));

    w.setContext(1024);
    s.nCtx = 1024;
    const auto longer = qz::estimateEvaluation(*hp, model->totalBytes(), s);
    QVERIFY(figure(longer) != figure(e));
    QVERIFY2(w.memoryLabel()->text().contains(figure(longer)), qPrintable(w.memoryLabel()->text()));

    w.setAvailableMemoryOverride(100'000'000);
    QSignalSpy done(&w, &CompareWorkspace::evaluationFinished);
    QVERIFY(!w.evaluate());
    QVERIFY(!w.runner()->isRunning());
    QVERIFY2(w.status()->text().startsWith(QStringLiteral("Not enough memory")),
             qPrintable(w.status()->text()));
    QVERIFY(w.status()->text().contains(QStringLiteral("select fewer variants")));
    QTest::qWait(50);
    QCOMPARE(done.count(), 0);
}

QTEST_MAIN(TestEvaluateMemory)
#include "test_evaluate_memory.moc"

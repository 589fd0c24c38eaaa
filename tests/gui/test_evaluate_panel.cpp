// The Evaluate workspace, offscreen: the original and its variants get finite perplexities, the same
// file as a variant has zero KL-divergence and 100 % same top token, a fake-quantized result and a
// perturbed-weights variant differ from the original, generation streams text for both sides, and a
// cancel stops a job and leaves the panel usable.
#include <QComboBox>
#include <QLineEdit>
#include <QSpinBox>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTest>
#include <cmath>

#include "evaluate_panel.h"
#include "jobs/quantize_job.h"

using namespace qz::ui;

class TestEvaluatePanel : public QObject {
    Q_OBJECT
private slots:
    void tableFilled();
    void generationSideBySide();
    void cancelStops();

private:
    static const char* gguf() { return QZ_TEST_DATA "/models/stories260K/stories260K.gguf"; }
    static ModelPtr open(const std::string& path) {
        auto m = qz::openModel(path);
        return m.ok() ? ModelPtr(*m) : nullptr;
    }
    static double value(QTableWidget* t, int row, int col) {
        auto* it = t->item(row, col);
        if (!it) return std::nan("");
        bool ok = false;
        const double v = it->data(Qt::UserRole).toDouble(&ok);
        return ok ? v : std::nan("");
    }
};

void TestEvaluatePanel::tableFilled() {
    EvaluatePanel panel;
    panel.show();
    auto model = open(gguf());
    QVERIFY(model);
    panel.setModel(model);
    panel.setContext(64);
    panel.setChunks(4);
    QVERIFY(panel.addGgufFile(QString::fromUtf8(gguf())));
    QString err;
    QVERIFY(!panel.addGgufFile(QStringLiteral("/no/such.gguf"), &err));
    QVERIFY(err.contains(QStringLiteral("/no/such.gguf")));
    // A variant with one perturbed weight tensor.
    const qz::TensorInfo* w = nullptr;
    for (const auto& t : model->tensors)
        if (t.name == "blk.0.ffn_down.weight") w = &t;
    QVERIFY(w);
    auto values = qz::readTensorF32(*model, *w);
    QVERIFY(values);
    for (size_t i = 0; i < values->size(); ++i) (*values)[i] *= (i % 2) ? 1.3f : 0.6f;
    auto ov = std::make_shared<qz::WeightOverrides>();
    (*ov)[w->name] = *values;
    panel.addVariant(QStringLiteral("perturbed"), model, ov);
    // The main window's fake-quantized result: absmax 4-bit per tensor on every 2-D weight.
    qz::QuantizeParams qp;
    qp.spec.bits = 4;
    auto qr = qz::runQuantize(*model, qp, {});
    QVERIFY2(qr, qr ? "" : qr.error().message.c_str());
    panel.setQuantizeResult(model, std::make_shared<const qz::QuantizeResult>(std::move(*qr)));
    QCOMPARE(panel.variantCount(), 3);
    QCOMPARE(panel.table()->rowCount(), 4);

    QSignalSpy done(&panel, &EvaluatePanel::evaluationFinished);
    QVERIFY(panel.evaluate());
    QVERIFY(panel.cancelButton()->isEnabled());
    QVERIFY(done.wait(240000));
    auto* t = panel.table();
    for (int r = 0; r < 4; ++r) {
        const double ppl = value(t, r, EvaluatePanel::ColPpl);
        QVERIFY2(std::isfinite(ppl) && ppl > 1 && ppl < 600, qPrintable(QStringLiteral("row %1: %2").arg(r).arg(ppl)));
        QVERIFY(std::isfinite(value(t, r, EvaluatePanel::ColKld)));
        QVERIFY(std::isfinite(value(t, r, EvaluatePanel::ColSameTop)));
    }
    // The same file: identical numbers.
    // (PPL(Q) of a KLD run is accumulated as llama-perplexity does it there: equal to a few ulps in float)
    QVERIFY2(std::fabs(value(t, 1, EvaluatePanel::ColPpl) / value(t, 0, EvaluatePanel::ColPpl) - 1) < 1e-5,
             qPrintable(QStringLiteral("%1 vs %2").arg(value(t, 1, EvaluatePanel::ColPpl), 0, 'g', 12)
                            .arg(value(t, 0, EvaluatePanel::ColPpl), 0, 'g', 12)));
    // (the base log-probabilities are stored as uint16 steps, as llama-perplexity stores them: ~1e-6)
    QVERIFY2(std::fabs(value(t, 1, EvaluatePanel::ColKld)) < 1e-5, qPrintable(QString::number(value(t, 1, EvaluatePanel::ColKld))));
    QCOMPARE(value(t, 1, EvaluatePanel::ColSameTop), 100.0);
    // Perturbed / 4-bit weights: a positive KLD and fewer identical top tokens.
    for (int r : {2, 3}) {
        QVERIFY2(value(t, r, EvaluatePanel::ColKld) > 1e-4, qPrintable(QString::number(value(t, r, EvaluatePanel::ColKld))));
        QVERIFY(value(t, r, EvaluatePanel::ColSameTop) < 100.0);
    }
    QVERIFY(!panel.cancelButton()->isEnabled());
    QVERIFY(panel.evaluateButton()->isEnabled());
}

void TestEvaluatePanel::generationSideBySide() {
    EvaluatePanel panel;
    auto model = open(gguf());
    QVERIFY(model);
    panel.setModel(model);
    QVERIFY(panel.addGgufFile(QString::fromUtf8(gguf())));
    panel.promptEdit()->setText(QStringLiteral("Once upon a time"));
    panel.tokensSpin()->setValue(12);
    QSignalSpy done(&panel, &EvaluatePanel::generationFinished);
    QSignalSpy tokens(&panel, &EvaluatePanel::tokenShown);
    QVERIFY(panel.generate());
    QVERIFY(done.wait(120000));
    QVERIFY(tokens.count() >= 2);
    const QString a = panel.originalText()->toPlainText(), b = panel.variantText()->toPlainText();
    QVERIFY(a.startsWith(QStringLiteral("Once upon a time")));
    QVERIFY(a.size() > 20);
    QCOMPARE(b, a);  // the same file, prompt and seed: the same text
}

void TestEvaluatePanel::cancelStops() {
    EvaluatePanel panel;
    auto model = open(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(model);
    panel.setModel(model);
    panel.setContext(128);
    panel.setChunks(0);  // the whole text: long enough to cancel
    QSignalSpy cancelled(panel.runner(), &BackgroundJob::cancelled);
    QSignalSpy progress(panel.runner(), &BackgroundJob::progress);
    QVERIFY(panel.evaluate());
    QVERIFY(progress.wait(60000));
    panel.cancelButton()->click();
    QCOMPARE(cancelled.count(), 1);
    QVERIFY(!panel.runner()->isRunning());
    QVERIFY(panel.evaluateButton()->isEnabled());
    panel.runner()->waitForIdle();  // the worker sees the flag at its next report and stops
    QVERIFY(!std::isfinite(value(panel.table(), 0, EvaluatePanel::ColPpl)));
    // Usable again.
    panel.setChunks(2);
    QSignalSpy done(&panel, &EvaluatePanel::evaluationFinished);
    QVERIFY(panel.evaluate());
    QVERIFY(done.wait(120000));
    QVERIFY(std::isfinite(value(panel.table(), 0, EvaluatePanel::ColPpl)));
}

QTEST_MAIN(TestEvaluatePanel)
#include "test_evaluate_panel.moc"

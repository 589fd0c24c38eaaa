#include "result_summary.h"

#include "format.h"

namespace qz::ui {

ResultSummary::ResultSummary(QWidget* parent) : QLabel(parent) {
    setObjectName(QStringLiteral("resultSummary"));
    setWordWrap(true);
    setTextInteractionFlags(Qt::TextSelectableByMouse);
    setMargin(4);
    showEmpty();
}

QString ResultSummary::summaryText(const qz::QuantizeResult& r) {
    const double bpw = r.quantizedParams ? 8.0 * double(r.bytesAfter) / double(r.quantizedParams) : 0.0;
    const double ratio = r.bytesAfter ? double(r.bytesBefore) / double(r.bytesAfter) : 0.0;
    QStringList lines;
    lines << tr("%1 — %n tensor(s), %2 parameters, %3 s", nullptr, int(r.tensors.size()))
                 .arg(toQ(r.spec.describe()), formatCount(r.quantizedParams))
                 .arg(r.seconds, 0, 'f', 2);
    lines << tr("Selected tensors: %1 → %2 (×%3 smaller), %4 bits per weight")
                 .arg(formatBytes(r.bytesBefore), formatBytes(r.bytesAfter))
                 .arg(ratio, 0, 'f', 2)
                 .arg(bpw, 0, 'f', 3);
    lines << tr("Whole model: %1 → %2").arg(formatBytes(r.modelBytesBefore), formatBytes(r.modelBytesAfter));
    lines << tr("Overall error: MSE %1, max |error| %2, SQNR %3 dB, cosine %4")
                 .arg(formatDouble(r.total.mse), formatDouble(r.total.maxAbs), formatDouble(r.total.sqnrDb))
                 .arg(r.total.cosine, 0, 'f', 6);
    return lines.join(QLatin1Char('\n'));
}

void ResultSummary::showResult(const qz::QuantizeResult& r) {
    setStyleSheet(QString());
    setText(summaryText(r));
}

void ResultSummary::showRunning(const QString& methodText) {
    setStyleSheet(QString());
    setText(tr("Running %1… rows appear as tensors finish; totals follow when the run completes.").arg(methodText));
}

void ResultSummary::showCancelled() {
    setStyleSheet(QStringLiteral("color: #8a5300;"));
    setText(tr("Cancelled — the partial results were discarded. Run again to get a complete result."));
}

void ResultSummary::showFailed(const QString& message) {
    setStyleSheet(QStringLiteral("color: #b00020;"));
    setText(tr("Failed: %1").arg(message));
}

void ResultSummary::showEmpty() {
    setStyleSheet(QString());
    setText(tr("No results yet: choose a method on the right and press Run."));
}

}  // namespace qz::ui

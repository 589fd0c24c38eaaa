// The run summary above the tensor table: sizes before/after (whole model and selected tensors),
// bits per weight, overall error; or the state of a running / cancelled / failed job.
#pragma once

#include <QLabel>

#include "qt_types.h"

namespace qz::ui {

class ResultSummary : public QLabel {
    Q_OBJECT
public:
    explicit ResultSummary(QWidget* parent = nullptr);

    void showResult(const qz::QuantizeResult& r);
    void showRunning(const QString& methodText);
    void showCancelled();
    void showFailed(const QString& message);
    void showEmpty();
    static QString summaryText(const qz::QuantizeResult& r);  // plain text, one line per figure
};

}  // namespace qz::ui

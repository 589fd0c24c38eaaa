// Writes a report folder for a finished run: report.json (qz::reportJson), report.md
// (qz::reportMarkdown plus links to the plots) and PNG plots rendered by HistogramPlot:
//   histogram_model.png            all selected weights, original vs dequantized
//   histogram_tensor.png           the focus tensor, original vs dequantized
//   histogram_tensor_error.png     the focus tensor's error (dequantized − original)
// Used by File › Export report and by `quantzoo --headless`. Needs a QApplication (widgets are
// created but never shown).
#pragma once

#include <QStringList>

#include "qt_types.h"

namespace qz::ui {

// The tensor the reports plot when none is chosen: the one with the most parameters (first on ties).
const qz::TensorQuantResult* largestTensor(const qz::QuantizeResult& r);

// Returns the paths written. `focus` may be null (then largestTensor(r)).
qz::Result<QStringList> writeReportFolder(const QString& dir, const qz::Model& model, const qz::QuantizeResult& r,
                                          const qz::TensorQuantResult* focus = nullptr);

}  // namespace qz::ui

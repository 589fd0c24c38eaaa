// Entry points of the `quantzoo` executable besides the normal window:
//   runHeadless    opens the model, runs the same quantize job, writes the report folder (JSON,
//                  Markdown, PNGs from HistogramPlot) and prints the folder; exit 0, or 1 with a
//                  one-line reason on stderr.
//   runScreenshot  shows the real window (offscreen), opens the model, runs the job, focuses the
//                  largest tensor and saves a grab of the window as PNG (used for the README).
// Both need a QApplication; neither creates a nested event loop.
#pragma once

#include "app_options.h"

namespace qz::ui {

class MainWindow;

int runHeadless(const AppOptions& options);
int runScreenshot(const AppOptions& options);

// Puts command-line choices into the window's panels (after the model is open: --names selects
// tensors in the tree).
void applyQuantChoices(MainWindow& window, const qz::QuantizeParams& params);

}  // namespace qz::ui

// Registers the compiled-in resources (icons) of the static qzui library; safe to call repeatedly.
void qzInitUiResources();

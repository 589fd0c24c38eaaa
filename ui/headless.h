// Entry points of the `quantzoo` executable besides the normal window:
//   runHeadless    opens the model, runs the same quantize job, writes the report folder (JSON,
//                  Markdown, PNGs from HistogramPlot) and prints the folder; exit 0, or 1 with a
//                  one-line reason on stderr.
//   runScreenshot  shows the real window (offscreen), opens the model, runs the job, focuses the
//                  largest tensor and saves a grab of the window as PNG (used for the README).
//   runScreenshotSet  the same window, one PNG per view into options.screenshotDir (names below): with
//                  --compare the Compare workspace's histograms (small multiples), per-layer chart and
//                  tensor table; otherwise the four Teaching views on the model's largest weight whose rows
//                  hold a k-quant super-block (EXL2: from --exl2-measurement at 4.0 bpw, else its empty
//                  state). Every image is the window (kScreenshotWidth × kScreenshotHeight, the method
//                  panel and the log hidden to give the view the room), palette-reduced; the paths are
//                  printed one per line.
// They need a QApplication; none creates a nested event loop.
#pragma once

#include "app_options.h"

namespace qz::ui {

class MainWindow;

int runHeadless(const AppOptions& options);
int runScreenshot(const AppOptions& options);
int runScreenshotSet(const AppOptions& options);
// The window size of runScreenshotSet's images, and their file names.
inline constexpr int kScreenshotWidth = 1440, kScreenshotHeight = 900;
inline const char* const kCompareShots[] = {"compare-histograms.png", "compare-layers.png",
                                            "compare-table.png"};
inline const char* const kTeachingShots[] = {"teaching-number-line.png", "teaching-super-block.png",
                                             "teaching-gptq.png", "teaching-exl2.png"};

// Puts command-line choices into the window's panels (after the model is open: --names selects
// tensors in the tree).
void applyQuantChoices(MainWindow& window, const qz::QuantizeParams& params);

}  // namespace qz::ui

// Registers the compiled-in resources (icons) of the static qzui library; safe to call repeatedly.
void qzInitUiResources();

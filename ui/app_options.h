// Command line of the `quantzoo` executable:
//   quantzoo [MODEL] [--method absmax|zeropoint] [--bits 2..8] [--granularity tensor|row|group]
//            [--group-size N] [--tensors all|2d] [--regex RE] [--names a,b,...]
//            [--bins N] [--range LO,HI] [--tensor-bins N]
//            [--headless --report-dir DIR] [--screenshot FILE.png [--compare PROJECT.json]]
//            [--screenshots DIR [--compare PROJECT.json] [--exl2-measurement MEASUREMENT.json]]
// Method names come from the MethodRegistry. Parsing never exits the process: help and errors are
// returned to main().
#pragma once

#include <QString>
#include <QStringList>

#include "jobs/quantize_job.h"

namespace qz::ui {

struct AppOptions {
    QString modelPath;          // empty: none given
    bool headless = false;
    QString reportDir;          // headless output folder
    QString screenshot;         // grab the window after the job into this PNG
    QString compareProject;     // with screenshot: open this comparison and grab the Compare workspace
    QString screenshotDir;      // grab a set of views into this folder (headless.h runScreenshotSet)
    QString exl2Measurement;    // with screenshotDir: the EXL2 teaching view from this measurement.json
    bool quantChoicesGiven = false;  // any of the method/tensor/histogram options given
    qz::QuantizeParams params;
    bool showHelp = false, showVersion = false;
    QString helpText;
};

qz::Result<AppOptions> parseAppOptions(const QStringList& arguments);  // arguments[0] is the program

// A file of the data installed with the programs (demo model, sample texts), relative to their data folder:
// <folder of the executable>/../share/quantzoo, i.e. <prefix>/share/quantzoo when installed and
// build/share/quantzoo (linked to resources/) in the build tree, so a moved installation still finds it.
// When that folder is missing (an executable copied alone), the first quantzoo folder of the XDG data
// folders ($XDG_DATA_HOME, $XDG_DATA_DIRS: /usr/local/share, /usr/share). The file need not exist.
QString dataPath(const QString& relative);
// The bundled demo model (dataPath("demo/stories260K")).
QString demoModelPath();
// The bundled sample text, tiny-shakespeare's validation split (dataPath("texts/shakespeare-valid.txt")).
QString sampleTextPath();

}  // namespace qz::ui

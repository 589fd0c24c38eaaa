// Command line of the `quantzoo` executable:
//   quantzoo [MODEL] [--method absmax|zeropoint] [--bits 2..8] [--granularity tensor|row|group]
//            [--group-size N] [--tensors all|2d] [--regex RE] [--names a,b,...]
//            [--bins N] [--range LO,HI] [--tensor-bins N]
//            [--headless --report-dir DIR] [--screenshot FILE.png]
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
    bool quantChoicesGiven = false;  // any of the method/tensor/histogram options given
    qz::QuantizeParams params;
    bool showHelp = false, showVersion = false;
    QString helpText;
};

qz::Result<AppOptions> parseAppOptions(const QStringList& arguments);  // arguments[0] is the program

// The bundled demo model (QZ_RESOURCES_DIR "/demo/stories260K").
QString demoModelPath();

}  // namespace qz::ui

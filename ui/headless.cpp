#include "headless.h"

#include <QApplication>
#include <QDir>
#include <QFileInfo>
#include <QPixmap>
#include <QTimer>
#include <cstdio>
#include <unistd.h>

#include "background_job.h"
#include "histograms_tab.h"
#include "compare_workspace.h"
#include "main_window.h"
#include "method_panel.h"
#include "model_tree.h"
#include "report_writer.h"
#include "workspace_tabs.h"

void qzInitUiResources() {
    static bool done = false;
    if (!done) {
        Q_INIT_RESOURCE(resources);
        done = true;
    }
}

namespace qz::ui {

namespace {
int fail(const QString& message) {
    std::fprintf(stderr, "quantzoo: %s\n", message.toLocal8Bit().constData());
    return 1;
}
}  // namespace

int runHeadless(const AppOptions& o) {
    const QString path = o.modelPath.isEmpty() ? demoModelPath() : o.modelPath;
    auto model = qz::openModel(toStd(path));
    if (!model) return fail(toQ(model.error().message));
    int lastDecile = -1;
    const bool terminal = isatty(2) != 0;  // progress for people; scripts get one line per outcome
    const qz::ProgressFn progress = [&](const qz::ProgressInfo& info) {
        const int decile = int(info.fraction * 10.0);
        if (terminal && decile != lastDecile) {
            lastDecile = decile;
            std::fprintf(stderr, "quantzoo: %3d%% %s\n", decile * 10, info.step.c_str());
        }
        return true;
    };
    auto result = qz::runQuantize(**model, o.params, progress);
    if (!result) return fail(toQ(result.error().message));
    auto written = writeReportFolder(o.reportDir, **model, *result);
    if (!written) return fail(toQ(written.error().message));
    std::printf("%s\n", QDir(o.reportDir).absolutePath().toLocal8Bit().constData());
    return 0;
}

void applyQuantChoices(MainWindow& w, const qz::QuantizeParams& params) {
    w.methodPanel()->setSpec(params.spec);
    w.methodPanel()->setSelectionMode(params.filter.mode);
    w.methodPanel()->setRegex(toQ(params.filter.regex));
    QStringList names;
    for (const auto& n : params.filter.names) names << toQ(n);
    if (!names.isEmpty()) w.modelTree()->selectTensors(names);
    w.histograms()->setModelHistogramSpec(params.modelHistogram);
    w.histograms()->setTensorBins(params.tensorBins);
}

int runScreenshot(const AppOptions& o) {
    MainWindow w;
    w.resize(1600, 1000);
    w.show();
    int code = 0;
    auto stop = [&](const QString& error) {
        if (!error.isEmpty()) code = fail(error);
        QTimer::singleShot(0, qApp, [] { QApplication::exit(); });
    };
    QObject::connect(&w, &MainWindow::modelFailed, &w, stop);
    QObject::connect(w.runner(), &BackgroundJob::failed, &w, stop);
    if (!o.compareProject.isEmpty()) {  // the Compare workspace on a saved comparison, no job
        CompareWorkspace* c = w.compareWorkspace();
        QObject::connect(c, &CompareWorkspace::histogramsShown, &w, [&, c] {
            w.workspaces()->showWorkspace(QStringLiteral("compare"));
            c->views()->setCurrentIndex(3);  // bits per weight against KLD
            QTimer::singleShot(400, &w, [&] {
                if (!w.grab().save(o.screenshot)) {
                    stop(QStringLiteral("cannot write %1").arg(o.screenshot));
                    return;
                }
                std::printf("%s\n", QFileInfo(o.screenshot).absoluteFilePath().toLocal8Bit().constData());
                stop(QString());
            });
        }, Qt::SingleShotConnection);
        QString error;
        if (!c->openProject(o.compareProject, &error)) return fail(error);
        QTimer::singleShot(10 * 60 * 1000, &w, [&] { stop(QStringLiteral("timed out")); });
        QApplication::exec();
        return code;
    }
    QObject::connect(&w, &MainWindow::modelOpened, &w, [&] {
        applyQuantChoices(w, o.params);
        if (!w.startRun()) stop(QStringLiteral("cannot start the job: ") + w.statusText());
    });
    QObject::connect(&w, &MainWindow::runFinished, &w, [&] {
        if (const auto* big = largestTensor(*w.result())) w.focusTensor(toQ(big->name));
        w.workspaces()->showWorkspace(QStringLiteral("histograms"));
        QTimer::singleShot(400, &w, [&] {  // let queued replots and layouts settle
            if (!w.grab().save(o.screenshot)) {
                stop(QStringLiteral("cannot write %1").arg(o.screenshot));
                return;
            }
            std::printf("%s\n", QFileInfo(o.screenshot).absoluteFilePath().toLocal8Bit().constData());
            stop(QString());
        });
    });
    QTimer::singleShot(10 * 60 * 1000, &w, [&] { stop(QStringLiteral("timed out")); });
    w.openPath(o.modelPath.isEmpty() ? demoModelPath() : o.modelPath);
    QApplication::exec();
    return code;
}

}  // namespace qz::ui

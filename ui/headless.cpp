#include "headless.h"

#include <QApplication>
#include <QDir>
#include <QFileInfo>
#include <QPixmap>
#include <QTimer>
#include <cstdio>
#include <unistd.h>

#include "background_job.h"
#include "compare_workspace.h"
#include "histograms_tab.h"
#include "main_window.h"
#include "method_panel.h"
#include "model_tree.h"
#include "report_writer.h"
#include "teaching_view.h"
#include "workspace_tabs.h"

#include <QDockWidget>
#include <QImage>
#include <QSplitter>
#include <functional>
#include <memory>

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

namespace {

// The window as a PNG, reduced to a palette of at most 256 colours (plots have few: the files stay small).
bool saveShot(MainWindow& w, const QString& path) {
    const QImage img =
        w.grab().toImage().convertToFormat(QImage::Format_Indexed8, Qt::ThresholdDither | Qt::AvoidDither);
    if (!img.save(path, "PNG", 0)) return false;
    std::printf("%s\n", QFileInfo(path).absoluteFilePath().toLocal8Bit().constData());
    std::fflush(stdout);
    return true;
}

// The largest 2-D weight whose rows hold whole k-quant super-blocks (256 values), else the largest.
QString teachingTensor(const qz::Model& m) {
    const qz::TensorInfo* best = nullptr;
    auto better = [&](const qz::TensorInfo& t) {
        if (t.shape.size() != 2) return false;
        if (!best) return true;
        const bool fits = t.cols() % 256 == 0, bestFits = best->cols() % 256 == 0;
        if (fits != bestFits) return fits;
        return t.numel() > best->numel();
    };
    for (const auto& t : m.tensors)
        if (better(t)) best = &t;
    return best ? toQ(best->name) : QString();
}

} // namespace

int runScreenshotSet(const AppOptions& o) {
    if (!QDir().mkpath(o.screenshotDir)) return fail(QStringLiteral("cannot create %1").arg(o.screenshotDir));
    const QDir dir(o.screenshotDir);
    MainWindow w;
    w.resize(kScreenshotWidth, kScreenshotHeight);
    // The view gets the room: no method panel (the splitter's right pane), no log.
    if (auto* centre = qobject_cast<QSplitter*>(w.centralWidget()); centre && centre->count() == 3)
        centre->widget(2)->hide();
    for (auto* dock : w.findChildren<QDockWidget*>())
        dock->hide();
    w.show();
    int code = 0;
    auto stop = [&](const QString& error) {
        if (!error.isEmpty()) code = fail(error);
        QTimer::singleShot(0, qApp, [] { QApplication::exit(); });
    };
    QObject::connect(&w, &MainWindow::modelFailed, &w, stop);
    // Steps run one after the other, each after queued replots and layouts settled.
    std::vector<std::function<void()>> steps;
    auto next = std::make_shared<std::function<void()>>();
    size_t at = 0;
    *next = [&, next] {
        if (at == steps.size()) {
            stop(QString());
            return;
        }
        QTimer::singleShot(400, &w, [&, next] { steps[at++](); });
    };
    auto shot = [&](const QString& name) {
        if (!saveShot(w, dir.filePath(name))) {
            stop(QStringLiteral("cannot write %1").arg(dir.filePath(name)));
            return;
        }
        (*next)();
    };
    if (!o.compareProject.isEmpty()) {
        CompareWorkspace* c = w.compareWorkspace();
        for (int view = 0; view < 3; ++view)
            steps.push_back([&, c, view] {
                w.workspaces()->showWorkspace(QStringLiteral("compare"));
                c->views()->setCurrentIndex(view); // histograms, per layer, table
                QTimer::singleShot(400, &w, [&, view] { shot(QString::fromLatin1(kCompareShots[view])); });
            });
        QObject::connect(
            c, &CompareWorkspace::histogramsShown, &w, [next] { (*next)(); }, Qt::SingleShotConnection);
        QString error;
        if (!c->openProject(o.compareProject, &error)) return fail(error);
    } else {
        TeachingView* t = w.teachingView();
        for (int view = 0; view < TeachingView::ViewCount; ++view)
            steps.push_back([&, t, view] {
                w.workspaces()->showWorkspace(QStringLiteral("teaching"));
                t->setView(TeachingView::View(view));
                if (view == TeachingView::GptqView)
                    t->gptqSetStep(t->gptqTrace() ? t->gptqTrace()->cols / 2 : 0);
                if (view == TeachingView::Exl2View && !o.exl2Measurement.isEmpty()) {
                    QObject::connect(
                        t, &TeachingView::exl2Optimized, &w,
                        [&] {
                            QTimer::singleShot(400, &w,
                                               [&] { shot(QString::fromLatin1(kTeachingShots[3])); });
                        },
                        Qt::SingleShotConnection);
                    if (!t->loadExl2Measurement(o.exl2Measurement, 4.0, 1, 100))
                        stop(t->error(TeachingView::Exl2View));
                    return;
                }
                QTimer::singleShot(400, &w, [&, view] { shot(QString::fromLatin1(kTeachingShots[view])); });
            });
        QObject::connect(
            &w, &MainWindow::modelOpened, &w,
            [&, next] {
                const QString name = teachingTensor(*w.model());
                if (name.isEmpty()) {
                    stop(QStringLiteral("the model has no 2-D weight to teach with"));
                    return;
                }
                w.focusTensor(name);
                (*next)();
            },
            Qt::SingleShotConnection);
        w.openPath(o.modelPath.isEmpty() ? demoModelPath() : o.modelPath);
    }
    QTimer::singleShot(10 * 60 * 1000, &w, [&] { stop(QStringLiteral("timed out")); });
    QApplication::exec();
    return code;
}

}  // namespace qz::ui

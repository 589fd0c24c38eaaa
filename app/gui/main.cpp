// quantzoo: the Qt GUI, plus --headless (report folder without a window) and --screenshot.
#include <QApplication>
#include <QTimer>
#include <cstdio>
#include <cstring>

#include "app_options.h"
#include "headless.h"
#include "main_window.h"
#include "quantzoo_config.h"

namespace {
// The platform must be chosen before QApplication exists: headless runs and --version / --help without a
// display go offscreen, and screenshots are always taken offscreen (same pixels on every machine).
void choosePlatform(int argc, char** argv) {
    if (!qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) return;
    bool headless = false, screenshot = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--headless") == 0) headless = true;
        if (std::strncmp(argv[i], "--screenshot", 12) == 0) screenshot = true;
        for (const char* info : {"--version", "-v", "--help", "-h", "--help-all"})
            if (std::strcmp(argv[i], info) == 0) headless = true;  // prints and exits: no window
    }
    const bool noDisplay = qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY");
    if (screenshot || (headless && noDisplay)) qputenv("QT_QPA_PLATFORM", "offscreen");
}
}  // namespace

int main(int argc, char** argv) {
    choosePlatform(argc, argv);
    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("QuantZoo"));
    QApplication::setApplicationName(QStringLiteral("QuantZoo"));
    QApplication::setApplicationVersion(QStringLiteral(QZ_VERSION));

    auto options = qz::ui::parseAppOptions(QApplication::arguments());
    if (!options) {
        std::fprintf(stderr, "quantzoo: %s\n", options.error().message.c_str());
        return 2;
    }
    if (options->showHelp) {
        std::printf("%s", options->helpText.toLocal8Bit().constData());
        return 0;
    }
    if (options->showVersion) {
        std::printf("quantzoo %s\n", qPrintable(QApplication::applicationVersion()));
        return 0;
    }
    if (options->headless) return qz::ui::runHeadless(*options);
    if (!options->screenshot.isEmpty()) return qz::ui::runScreenshot(*options);
    if (!options->screenshotDir.isEmpty()) return qz::ui::runScreenshotSet(*options);

    qz::ui::MainWindow window;
    window.show();
    if (options->quantChoicesGiven) {
        const qz::QuantizeParams params = options->params;
        QObject::connect(&window, &qz::ui::MainWindow::modelOpened, &window,
                         [&window, params] { qz::ui::applyQuantChoices(window, params); },
                         Qt::SingleShotConnection);
    }
    if (!options->modelPath.isEmpty()) window.openPath(options->modelPath);
    return QApplication::exec();
}

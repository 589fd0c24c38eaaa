// Headless mode: the same job without a window writes report.json, report.md and PNG plots.
// Checked in-process (runHeadless) and through the real `quantzoo` executable (exit codes, the
// printed folder, the one-line error), plus --screenshot producing a PNG of the window and --screenshots
// producing the set of view images the README shows (every one a PNG of the window's size, non-empty,
// not a single colour, at most 150 KB).
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QImage>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QSet>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include "app_options.h"
#include "headless.h"
#include "time_scale.h"
#include "variants/variants.h"

using namespace qz::ui;

namespace {
const QString kDemo = QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K");
const QString kExe = QStringLiteral(QZ_BINARY_DIR "/app/quantzoo");
const QString kBard = QStringLiteral(QZ_TEST_DATA "/models/bard-llama");

bool isPng(const QString& path, qint64 minSize = 1000) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly) || f.size() < minSize) return false;
    return f.read(8) == QByteArray("\x89PNG\r\n\x1a\n", 8);
}

// A window image of the set: the expected size, more than one colour, small enough for the README.
void checkShot(const QString& path) {
    QVERIFY2(isPng(path, 5000), qPrintable(path));
    QVERIFY2(QFileInfo(path).size() <= 150 * 1024, qPrintable(path));
    const QImage img(path);
    QCOMPARE(img.size(), QSize(kScreenshotWidth, kScreenshotHeight));
    const QImage rgb = img.convertToFormat(QImage::Format_RGB32);
    QSet<QRgb> colours;
    for (int y = 0; y < rgb.height() && colours.size() < 4; y += 7)
        for (int x = 0; x < rgb.width(); x += 7)
            colours.insert(rgb.pixel(x, y));
    QVERIFY2(colours.size() >= 4, qPrintable(path));
}

QProcessEnvironment offscreenEnv() {
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.remove(QStringLiteral("DISPLAY"));
    env.remove(QStringLiteral("WAYLAND_DISPLAY"));
    env.remove(QStringLiteral("QT_QPA_PLATFORM"));  // the executable must choose offscreen itself
    env.insert(QStringLiteral("XDG_CONFIG_HOME"), QDir::tempPath() + QStringLiteral("/qz-test-config"));
    return env;
}
}  // namespace

class TestHeadless : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

    void inProcessReport() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString out = dir.filePath(QStringLiteral("report"));
        auto opts = parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--headless"),
                                     QStringLiteral("--report-dir"), out, kDemo, QStringLiteral("--method"),
                                     QStringLiteral("zeropoint"), QStringLiteral("--bits"), QStringLiteral("4"),
                                     QStringLiteral("--granularity"), QStringLiteral("group"),
                                     QStringLiteral("--group-size"), QStringLiteral("32")});
        QVERIFY2(opts.ok(), opts.ok() ? "" : opts.error().message.c_str());
        QCOMPARE(runHeadless(*opts), 0);
        for (const char* png : {"histogram_model.png", "histogram_tensor.png", "histogram_tensor_error.png"})
            QVERIFY2(isPng(out + QLatin1Char('/') + QLatin1String(png)), png);
        QFile md(out + QStringLiteral("/report.md"));
        QVERIFY(md.open(QIODevice::ReadOnly));
        const QByteArray mdText = md.readAll();
        QVERIFY(mdText.size() > 100);
        QVERIFY(mdText.contains("histogram_model.png"));
        QFile js(out + QStringLiteral("/report.json"));
        QVERIFY(js.open(QIODevice::ReadOnly));
        const QJsonObject j = QJsonDocument::fromJson(js.readAll()).object();
        QCOMPARE(j[QStringLiteral("method")][QStringLiteral("method")].toString(), QStringLiteral("zeropoint"));
        QCOMPARE(j[QStringLiteral("method")][QStringLiteral("bits")].toInt(), 4);
        QCOMPARE(j[QStringLiteral("method")][QStringLiteral("group_size")].toInt(), 32);
        QCOMPARE(j[QStringLiteral("tensors")].toArray().size(), 36);  // the demo's 2-D weights
    }

    void badOptions() {
        QVERIFY(!parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--bits"), QStringLiteral("12")}).ok());
        QVERIFY(!parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--method"), QStringLiteral("nope")}).ok());
        QVERIFY(!parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--headless")}).ok());
        QVERIFY(!parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--range=2,-2")}).ok());
        auto ok = parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--regex"), QStringLiteral("mlp"),
                                   QStringLiteral("--bins"), QStringLiteral("64"), QStringLiteral("--range=-1,1")});
        QVERIFY(ok.ok());
        QCOMPARE(ok->params.filter.mode, qz::TensorSelection::Regex);
        QCOMPARE(ok->params.modelHistogram.bins, 64);
        QCOMPARE(ok->params.modelHistogram.lo, -1.0);
    }

    void executable() {
        QVERIFY2(QFile::exists(kExe), "build the quantzoo target before running this test");
        QTemporaryDir dir;
        const QString out = dir.filePath(QStringLiteral("exe-report"));
        QProcess p;
        p.setProcessEnvironment(offscreenEnv());
        p.start(kExe, {QStringLiteral("--headless"), QStringLiteral("--report-dir"), out, kDemo,
                       QStringLiteral("--method"), QStringLiteral("absmax"), QStringLiteral("--bits"),
                       QStringLiteral("8")});
        QVERIFY(p.waitForFinished(scaledMs(120000)));
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        QCOMPARE(QString::fromLocal8Bit(p.readAllStandardOutput()).trimmed(), QDir(out).absolutePath());
        QVERIFY(isPng(out + QStringLiteral("/histogram_model.png")));
        QVERIFY(QFileInfo(out + QStringLiteral("/report.json")).size() > 100);

        // A broken model: non-zero exit and a one-line reason.
        QProcess bad;
        bad.setProcessEnvironment(offscreenEnv());
        bad.start(kExe, {QStringLiteral("--headless"), QStringLiteral("--report-dir"), out,
                         dir.filePath(QStringLiteral("missing.gguf"))});
        QVERIFY(bad.waitForFinished(scaledMs(60000)));
        QVERIFY(bad.exitCode() != 0);
        // Qt itself may warn on stderr (e.g. about XDG_RUNTIME_DIR); our reason is exactly one line.
        const QString err = QString::fromLocal8Bit(bad.readAllStandardError());
        const QStringList ours = err.split(QLatin1Char('\n')).filter(QRegularExpression(QStringLiteral("^quantzoo: ")));
        QVERIFY2(ours.size() == 1 && ours.front().contains(QStringLiteral("missing.gguf")), qPrintable(err));
    }

    void screenshot() {
        QVERIFY2(QFile::exists(kExe), "build the quantzoo target before running this test");
        QTemporaryDir dir;
        const QString png = dir.filePath(QStringLiteral("window.png"));
        QProcess p;
        p.setProcessEnvironment(offscreenEnv());
        p.start(kExe, {QStringLiteral("--screenshot"), png, kDemo, QStringLiteral("--bits"), QStringLiteral("4")});
        QVERIFY(p.waitForFinished(scaledMs(180000)));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        QVERIFY(isPng(png, 20000));
        QImage img(png);
        QVERIFY(img.width() >= 1200 && img.height() >= 800);
    }

    void screenshotSet();
};

void TestHeadless::screenshotSet() {
    QVERIFY2(QFile::exists(kExe), "build the quantzoo target before running this test");
    QTemporaryDir dir;
    // The Teaching views on bard-llama (the EXL2 view in its state before an export).
    QProcess p;
    p.setProcessEnvironment(offscreenEnv());
    p.start(kExe, {QStringLiteral("--screenshots"), dir.filePath(QStringLiteral("teach")), kBard});
    QVERIFY(p.waitForFinished(scaledMs(300000)));
    QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
    const QString printed = QString::fromLocal8Bit(p.readAllStandardOutput());
    for (const char* name : kTeachingShots) {
        const QString f = dir.filePath(QStringLiteral("teach/") + QLatin1String(name));
        QVERIFY2(printed.contains(QFileInfo(f).absoluteFilePath()), qPrintable(printed));
        checkShot(f);
    }
    // The Compare views on a saved comparison of the demo model with two variants.
    auto m = qz::openModel(kDemo.toStdString());
    QVERIFY(m.ok());
    qz::Comparison c;
    c.modelPath = (*m)->path;
    c.tensor = "model.layers.0.mlp.up_proj.weight";
    for (const char* spec : {"absmax:4:row", "zeropoint:3:group:32"}) {
        auto v = qz::makeFakeQuantVariant(**m, *qz::parseMethodSpec(spec));
        QVERIFY(v.ok());
        c.variants.push_back(*v);
    }
    c.selected = {0, 1};
    const QString project = dir.filePath(QStringLiteral("c.json"));
    QVERIFY(qz::saveComparison(c, project.toStdString()).ok());
    QProcess q;
    q.setProcessEnvironment(offscreenEnv());
    q.start(kExe, {QStringLiteral("--screenshots"), dir.filePath(QStringLiteral("cmp")),
                   QStringLiteral("--compare"), project});
    QVERIFY(q.waitForFinished(scaledMs(300000)));
    QVERIFY2(q.exitCode() == 0, q.readAllStandardError().constData());
    for (const char* name : kCompareShots)
        checkShot(dir.filePath(QStringLiteral("cmp/") + QLatin1String(name)));
    // Wrong combinations are usage errors.
    QVERIFY(
        !parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--exl2-measurement"), project}).ok());
    QVERIFY(!parseAppOptions({QStringLiteral("quantzoo"), QStringLiteral("--screenshots"), dir.path(),
                              QStringLiteral("--screenshot"), project})
                 .ok());
}

QTEST_MAIN(TestHeadless)
#include "test_headless.moc"

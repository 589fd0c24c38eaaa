// Installation: `cmake --install` of this build into a temporary prefix, which is then moved elsewhere
// (so neither the source tree, the build tree nor the first prefix can be what the programs use), and
// the moved programs run: --version of both, `quantzoo-cli info` on the installed demo model, and the GUI
// headless with no model argument (the installed demo), whose report must name the installed demo.
// Also checks the desktop integration files (desktop entry, icons, AppStream metainfo) and validates
// them with desktop-file-validate / appstreamcli when those Debian tools are present.
#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QImage>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include "time_scale.h"

namespace {
const QString kBuild = QStringLiteral(QZ_BINARY_DIR);
const QString kSource = QDir::cleanPath(QStringLiteral(QZ_TEST_DATA "/../.."));
const QString kAppId = QStringLiteral("io.github.quantzoo.QuantZoo");

// The CMake that configured this build (from its cache), else the one on PATH.
QString cmakeCommand() {
    QFile cache(kBuild + QStringLiteral("/CMakeCache.txt"));
    if (cache.open(QIODevice::ReadOnly)) {
        const QRegularExpression re(QStringLiteral("^CMAKE_COMMAND:INTERNAL=(.+)$"),
                                    QRegularExpression::MultilineOption);
        const auto m = re.match(QString::fromUtf8(cache.readAll()));
        if (m.hasMatch() && QFileInfo(m.captured(1).trimmed()).isExecutable()) return m.captured(1).trimmed();
    }
    return QStringLiteral("cmake");
}

// The version written in the top-level CMakeLists.txt (project(QuantZoo VERSION x.y.z)).
QString projectVersion() {
    QFile f(kSource + QStringLiteral("/CMakeLists.txt"));
    if (!f.open(QIODevice::ReadOnly)) return {};
    const auto m = QRegularExpression(QStringLiteral("project\\(QuantZoo VERSION ([0-9.]+)"))
                       .match(QString::fromUtf8(f.readAll()));
    return m.hasMatch() ? m.captured(1) : QString();
}

struct Run {
    int code = -1;
    QString out, err;
};

Run run(const QString& program, const QStringList& args, const QString& cwd, const QProcessEnvironment& env) {
    QProcess p;
    p.setProgram(program);
    p.setArguments(args);
    p.setWorkingDirectory(cwd);
    p.setProcessEnvironment(env);
    p.start();
    Run r;
    if (!p.waitForFinished(scaledMs(300000))) {
        p.kill();
        p.waitForFinished();
        r.err = QStringLiteral("did not finish: ") + program;
        return r;
    }
    r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = QString::fromLocal8Bit(p.readAllStandardOutput());
    r.err = QString::fromLocal8Bit(p.readAllStandardError());
    return r;
}

QString describe(const Run& r) {
    return QStringLiteral("exit %1\nstdout: %2\nstderr: %3")
        .arg(r.code)
        .arg(r.out.left(2000), r.err.left(2000));
}

QString readText(const QString& path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
}
} // namespace

class TestInstall : public QObject {
    Q_OBJECT
  private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_tmp.isValid());
        m_version = projectVersion();
        QVERIFY2(!m_version.isEmpty(), "no project(QuantZoo VERSION ...) in CMakeLists.txt");

        // Install, then move the prefix one level deeper under another name.
        const QString first = m_tmp.filePath(QStringLiteral("first-prefix"));
        const Run inst =
            run(cmakeCommand(), {QStringLiteral("--install"), kBuild, QStringLiteral("--prefix"), first},
                m_tmp.path(), QProcessEnvironment::systemEnvironment());
        QVERIFY2(inst.code == 0, qPrintable(describe(inst)));
        QVERIFY(QDir().mkpath(m_tmp.filePath(QStringLiteral("elsewhere"))));
        m_prefix = m_tmp.filePath(QStringLiteral("elsewhere/moved-prefix"));
        QVERIFY(QDir().rename(first, m_prefix));
        QVERIFY(!QFileInfo::exists(first));

        // The programs see no display, no configuration and no XDG data folder of this machine.
        m_env = QProcessEnvironment::systemEnvironment();
        for (const char* v : {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"})
            m_env.remove(QString::fromLatin1(v));
        const QString empty = m_tmp.filePath(QStringLiteral("empty"));
        QVERIFY(QDir().mkpath(empty));
        m_env.insert(QStringLiteral("XDG_DATA_HOME"), empty);
        m_env.insert(QStringLiteral("XDG_DATA_DIRS"), empty);
        m_env.insert(QStringLiteral("XDG_CONFIG_HOME"), empty);
        m_cwd = empty;
    }

    void installedFiles() {
        for (const char* f :
             {"bin/quantzoo", "bin/quantzoo-cli", "share/quantzoo/demo/stories260K/model.safetensors",
              "share/quantzoo/demo/stories260K/config.json", "share/quantzoo/demo/LICENSE.txt",
              "share/quantzoo/texts/shakespeare-valid.txt", "share/quantzoo/texts/LICENSE.txt"})
            QVERIFY2(QFileInfo(m_prefix + QLatin1Char('/') + QLatin1String(f)).isFile(), f);
        for (const char* exe : {"bin/quantzoo", "bin/quantzoo-cli"})
            QVERIFY2(QFileInfo(m_prefix + QLatin1Char('/') + QLatin1String(exe)).isExecutable(), exe);
        // Installed file for file as in the sources, not a link into them.
        const QString model = m_prefix + QStringLiteral("/share/quantzoo/demo/stories260K/model.safetensors");
        QVERIFY(!QFileInfo(model).isSymLink());
        QCOMPARE(QFileInfo(model).size(),
                 QFileInfo(kSource + QStringLiteral("/resources/demo/stories260K/model.safetensors")).size());
        // No installed file is a link (a link could point back into the source or build tree).
        QDirIterator it(m_prefix, QDir::AllEntries | QDir::NoDotAndDotDot | QDir::System,
                        QDirIterator::Subdirectories);
        while (it.hasNext()) {
            it.next();
            QVERIFY2(!it.fileInfo().isSymLink(), qPrintable(it.filePath()));
        }
        // The executables carry no path of the source tree's data.
        for (const char* exe : {"bin/quantzoo", "bin/quantzoo-cli"}) {
            QFile f(m_prefix + QLatin1Char('/') + QLatin1String(exe));
            QVERIFY(f.open(QIODevice::ReadOnly));
            QVERIFY2(!f.readAll().contains((kSource + QStringLiteral("/resources")).toUtf8()), exe);
        }
    }

    void desktopIntegration() {
        const QString desktop =
            m_prefix + QStringLiteral("/share/applications/") + kAppId + QStringLiteral(".desktop");
        const QString text = readText(desktop);
        QVERIFY2(!text.isEmpty(), qPrintable(desktop));
        // Exec runs the installed GUI; Icon names the installed icons.
        const auto exec =
            QRegularExpression(QStringLiteral("^Exec=(\\S+)"), QRegularExpression::MultilineOption)
                .match(text);
        QVERIFY(exec.hasMatch());
        QVERIFY2(QFileInfo(m_prefix + QStringLiteral("/bin/") + exec.captured(1)).isExecutable(),
                 qPrintable(exec.captured(1)));
        QVERIFY(text.contains(QStringLiteral("\nIcon=") + kAppId + QLatin1Char('\n')));
        const QString icons = m_prefix + QStringLiteral("/share/icons/hicolor/");
        QVERIFY(
            QFileInfo(icons + QStringLiteral("scalable/apps/") + kAppId + QStringLiteral(".svg")).isFile());
        for (int size : {48, 64, 128, 256}) {
            const QString png =
                icons + QStringLiteral("%1x%1/apps/").arg(size) + kAppId + QStringLiteral(".png");
            QImage img(png);
            QVERIFY2(!img.isNull(), qPrintable(png));
            QCOMPARE(img.size(), QSize(size, size));
        }
        const QString metainfo =
            m_prefix + QStringLiteral("/share/metainfo/") + kAppId + QStringLiteral(".metainfo.xml");
        const QString meta = readText(metainfo);
        QVERIFY2(meta.contains(QStringLiteral("<id>") + kAppId + QStringLiteral("</id>")),
                 qPrintable(metainfo));
        QVERIFY(meta.contains(QStringLiteral("<launchable type=\"desktop-id\">") + kAppId +
                              QStringLiteral(".desktop</launchable>")));
        QVERIFY(meta.contains(QStringLiteral("<release version=\"") + m_version + QLatin1Char('"')));

        // The Debian validators, when installed (desktop-file-utils, appstream).
        const QString dfv = QStandardPaths::findExecutable(QStringLiteral("desktop-file-validate"));
        if (dfv.isEmpty()) {
            qInfo("desktop-file-validate not installed (Debian: desktop-file-utils): desktop entry not "
                  "validated");
        } else {
            const Run r = run(dfv, {desktop}, m_cwd, m_env);
            QVERIFY2(r.code == 0 && r.out.trimmed().isEmpty(), qPrintable(describe(r)));
        }
        const QString asc = QStandardPaths::findExecutable(QStringLiteral("appstreamcli"));
        if (asc.isEmpty()) {
            qInfo("appstreamcli not installed (Debian: appstream): metainfo not validated");
        } else {
            const Run r =
                run(asc, {QStringLiteral("validate"), QStringLiteral("--no-net"), metainfo}, m_cwd, m_env);
            QVERIFY2(r.code == 0, qPrintable(describe(r)));
        }
    }

    void versions() {
        const Run cli =
            run(m_prefix + QStringLiteral("/bin/quantzoo-cli"), {QStringLiteral("--version")}, m_cwd, m_env);
        QVERIFY2(cli.code == 0, qPrintable(describe(cli)));
        QCOMPARE(cli.out, QStringLiteral("quantzoo-cli %1\n").arg(m_version));
        const Run gui =
            run(m_prefix + QStringLiteral("/bin/quantzoo"), {QStringLiteral("--version")}, m_cwd, m_env);
        QVERIFY2(gui.code == 0, qPrintable(describe(gui)));
        QCOMPARE(gui.out, QStringLiteral("quantzoo %1\n").arg(m_version));
    }

    void cliInfoOnInstalledDemo() {
        const QString demo = m_prefix + QStringLiteral("/share/quantzoo/demo/stories260K");
        const Run r =
            run(m_prefix + QStringLiteral("/bin/quantzoo-cli"), {QStringLiteral("info"), demo}, m_cwd, m_env);
        QVERIFY2(r.code == 0, qPrintable(describe(r)));
        // Tensor names from the demo model's safetensors header.
        QVERIFY2(r.out.contains(QStringLiteral("model.layers.0.mlp.down_proj.weight")),
                 qPrintable(describe(r)));
        QVERIFY2(r.out.contains(QStringLiteral("model.layers.4.self_attn.q_proj.weight")),
                 qPrintable(describe(r)));
    }

    void headlessGuiOnBundledDemo() {
        const QString report = m_tmp.filePath(QStringLiteral("report"));
        const Run r =
            run(m_prefix + QStringLiteral("/bin/quantzoo"),
                {QStringLiteral("--headless"), QStringLiteral("--report-dir"), report}, m_cwd, m_env);
        QVERIFY2(r.code == 0, qPrintable(describe(r)));
        QVERIFY2(QFileInfo(report + QStringLiteral("/report.md")).isFile(), qPrintable(describe(r)));
        QFile json(report + QStringLiteral("/report.json"));
        QVERIFY(json.open(QIODevice::ReadOnly));
        const QJsonObject o = QJsonDocument::fromJson(json.readAll()).object();
        // The job ran on the demo model of the moved installation.
        const QString modelPath = QDir::cleanPath(
            o.value(QStringLiteral("model")).toObject().value(QStringLiteral("path")).toString());
        QCOMPARE(modelPath, QDir::cleanPath(m_prefix + QStringLiteral("/share/quantzoo/demo/stories260K")));
        QVERIFY(o.value(QStringLiteral("tensors")).toArray().size() > 0);
        QVERIFY(QFileInfo(report + QStringLiteral("/histogram_model.png")).size() > 1000);
    }

  private:
    QTemporaryDir m_tmp;
    QString m_version, m_prefix, m_cwd;
    QProcessEnvironment m_env;
};

QTEST_GUILESS_MAIN(TestInstall)
#include "test_install.moc"

// Help › About QuantZoo: the version (the one in the top-level CMakeLists.txt), QuantZoo's licence, the
// libraries it is built on with their licences, and the licences of the bundled demo model and text.
#include <QFile>
#include <QRegularExpression>
#include <QStandardPaths>
#include <QTest>

#include "about_dialog.h"
#include "main_window.h"

using namespace qz::ui;

class TestAbout : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTestAbout"));
    }

    void aboutBox() {
        const QString t = AboutDialog::text();
        // The version, QuantZoo's licence, the credited libraries and the bundled data's licences.
        QFile cm(QStringLiteral(QZ_TEST_DATA "/../../CMakeLists.txt"));
        QVERIFY(cm.open(QIODevice::ReadOnly));
        const auto m = QRegularExpression(QStringLiteral("project\\(QuantZoo VERSION ([0-9.]+)"))
                           .match(QString::fromUtf8(cm.readAll()));
        QVERIFY(m.hasMatch());
        QVERIFY2(t.contains(QStringLiteral("QuantZoo ") + m.captured(1)), qPrintable(t));
        for (const char* s :
             {"MIT licence", "Qt", "LGPL-3.0", "QCustomPlot", "GPL-3.0", "Eigen", "MPL-2.0", "OpenBLAS",
              "BSD-3-Clause", "stories260K", "tinyllamas", "tiny-shakespeare", "public domain"})
            QVERIFY2(t.contains(QLatin1String(s)), s);
        QVERIFY(t.contains(QString::fromLatin1(qVersion())));  // the Qt it runs on
        MainWindow w;
        QVERIFY(w.aboutAction());
        w.aboutAction()->trigger();
        auto* dialog = w.findChild<AboutDialog*>();
        QVERIFY(dialog);
        QVERIFY(dialog->isVisible());
        dialog->close();
    }
};

QTEST_MAIN(TestAbout)
#include "test_about.moc"

// Hostile or missing input through the window: a garbage file opened from the menu path, garbage
// dropped onto the window, a missing path. Each must give a clear error (message box, status bar,
// log) and leave the application working; dropping the demo folder afterwards opens it.
#include <QDropEvent>
#include <QFile>
#include <QMessageBox>
#include <QMimeData>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QUrl>

#include "main_window.h"
#include "model_tree.h"

using namespace qz::ui;

namespace {
QString writeFile(const QTemporaryDir& dir, const QString& name, const QByteArray& bytes) {
    const QString path = dir.filePath(name);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size()) return {};
    return path;
}

QByteArray garbage(int n, quint32 seed) {
    QByteArray b(n, Qt::Uninitialized);
    for (int i = 0; i < n; ++i) {
        seed = seed * 1664525u + 1013904223u;
        b[i] = char(seed >> 24);
    }
    return b;
}

void drop(QWidget* target, const QString& path) {
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(path)});
    const QPointF pos(target->width() / 2.0, target->height() / 2.0);
    QDragEnterEvent enter(pos.toPoint(), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QCoreApplication::sendEvent(target, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent dropEvent(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QCoreApplication::sendEvent(target, &dropEvent);
}

int visibleErrorBoxes(QWidget* w) {
    int n = 0;
    for (QMessageBox* b : w->findChildren<QMessageBox*>(QStringLiteral("errorBox")))
        if (b->isVisible()) ++n;
    return n;
}
}  // namespace

class TestOpenErrors : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTest"));
    }

    void corruptFiles() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        MainWindow w;
        w.show();
        QSignalSpy failed(&w, &MainWindow::modelFailed);
        QSignalSpy opened(&w, &MainWindow::modelOpened);

        // 1. Garbage with a .safetensors name, opened like File > Open does.
        const QString st = writeFile(dir, QStringLiteral("broken.safetensors"), garbage(4096, 1));
        QVERIFY(!st.isEmpty());
        w.openPath(st);
        QVERIFY(failed.wait(30000));
        QVERIFY(!w.model());
        QVERIFY(w.lastError().contains(QStringLiteral("broken.safetensors")));
        QVERIFY(w.statusText().contains(QStringLiteral("Cannot open model")));
        QCOMPARE(visibleErrorBoxes(&w), 1);
        for (QMessageBox* b : w.findChildren<QMessageBox*>(QStringLiteral("errorBox"))) b->close();

        // 2. A GGUF magic followed by garbage, dropped onto the window.
        const QString gg = writeFile(dir, QStringLiteral("broken.gguf"), QByteArray("GGUF") + garbage(1000, 7));
        drop(&w, gg);
        QVERIFY(failed.wait(30000));
        QVERIFY(w.lastError().contains(QStringLiteral("broken.gguf")));
        QVERIFY(!w.model());

        // 3. An empty file and a missing path.
        w.openPath(writeFile(dir, QStringLiteral("empty.safetensors"), QByteArray()));
        QVERIFY(failed.wait(30000));
        w.openPath(dir.filePath(QStringLiteral("does-not-exist")));
        QVERIFY(failed.wait(30000));
        QVERIFY(w.lastError().contains(QStringLiteral("does-not-exist")));
        QCOMPARE(failed.count(), 4);
        QCOMPARE(opened.count(), 0);

        // Still usable: dropping the demo model folder opens it.
        drop(&w, QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K"));
        QVERIFY(opened.wait(30000));
        QVERIFY(w.model());
        QCOMPARE(w.modelTree()->tensorCount(), 47);

        // A later bad open keeps the good model.
        w.openPath(st);
        QVERIFY(failed.wait(30000));
        QVERIFY(w.model());
        QCOMPARE(w.modelTree()->tensorCount(), 47);
    }
};

QTEST_MAIN(TestOpenErrors)
#include "test_open_errors.moc"

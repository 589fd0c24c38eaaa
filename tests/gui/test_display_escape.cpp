// Strings from a model file reach the window with their control characters escaped as the CLI prints them
// (qz::printableText): a safetensors file whose name, metadata and tensor name carry an OSC title sequence
// (ESC ] 0; ... BEL), a CSI (ESC [ 2J) and a C1 CSI (U+009B). Checked where they are shown: the window title,
// the model summary, the tree (text and tooltip). Lookups by the real name keep working.
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include <fstream>

#include "main_window.h"
#include "model_summary.h"
#include "model_tree.h"

using namespace qz::ui;

namespace {
const std::string kTensor = "w\x1b[2J";
const std::string kFile = "evil\x1b]0;owned\x07.safetensors";

// A safetensors file written by hand (8-byte header length, JSON header, data): one F32 [2, 2] tensor.
void writeEvilSafetensors(const std::string& path) {
    const std::string header = "{\"__metadata__\": {\"note\": \"\\u001b]0;title\\u0007 \\u009b31m red\"}, "
                               "\"w\\u001b[2J\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}";
    std::ofstream f(path, std::ios::binary);
    const uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header;
    const float v[4] = {1, -2, 3, -4};
    f.write(reinterpret_cast<const char*>(v), sizeof v);
}

bool hasControl(const QString& s) {
    for (QChar c : s)
        if ((c.unicode() < 0x20 && c != QLatin1Char('\n') && c != QLatin1Char('\t')) ||
            (c.unicode() >= 0x7f && c.unicode() < 0xa0))
            return true;
    return false;
}
}  // namespace

class TestDisplayEscape : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTest"));
    }

    void controlCharactersAreEscaped() {
        QTemporaryDir dir;
        const std::string path = dir.path().toStdString() + "/" + kFile;
        writeEvilSafetensors(path);

        MainWindow w;
        w.show();
        QSignalSpy opened(&w, &MainWindow::modelOpened);
        w.openPath(QString::fromStdString(path));
        QVERIFY(opened.wait(30000));

        // Window title: the file name's OSC sequence escaped.
        QVERIFY2(!hasControl(w.windowTitle()), qPrintable(w.windowTitle()));
        QVERIFY2(w.windowTitle().contains(QStringLiteral("evil\\x1b]0;owned\\x07")), qPrintable(w.windowTitle()));

        // Summary: name, path, metadata value, tensor count.
        auto* summary = w.findChild<ModelSummary*>(QStringLiteral("modelSummary"));
        QVERIFY(summary);
        const QString text = summary->toPlainText();
        QVERIFY2(!hasControl(text), qPrintable(text));
        QVERIFY2(text.contains(QStringLiteral("\\x1b]0;title\\x07 \\u009b31m red")), qPrintable(text));
        QVERIFY2(text.contains(QStringLiteral("evil\\x1b]0;owned\\x07.safetensors")), qPrintable(text));

        // Tree: the shown name and tooltip escaped; found by its real name; the current tensor's signal
        // carries the real name.
        ModelTree* tree = w.modelTree();
        QCOMPARE(tree->tensorCount(), 1);
        QTreeWidgetItem* item = tree->itemForTensor(QString::fromStdString(kTensor));
        QVERIFY(item);
        QCOMPARE(item->text(ModelTree::ColName), QStringLiteral("w\\x1b[2J"));
        QVERIFY(!hasControl(item->toolTip(ModelTree::ColName)));
        QSignalSpy current(tree, &ModelTree::currentTensorChanged);
        tree->setCurrentItem(nullptr);
        tree->setCurrentItem(item);
        QVERIFY(!current.isEmpty());
        QCOMPARE(current.last().at(0).toString(), QString::fromStdString(kTensor));

        // The CLI's escaping, as an independent expectation of the same bytes.
        QCOMPARE(qz::printableText("a\x1b]0;t\x07 \xc2\x9b" "1m"), std::string("a\\x1b]0;t\\x07 \\u009b1m"));
    }
};

QTEST_MAIN(TestDisplayEscape)
#include "test_display_escape.moc"

// Strings from a model file reach the window with their control characters escaped as the CLI prints them
// (qz::printableText): a safetensors file whose name, metadata and tensor name carry an OSC title sequence
// (ESC ] 0; ... BEL), a CSI (ESC [ 2J) and a C1 CSI (U+009B). Checked where they are shown: the window title,
// the model summary, the tree (text and tooltip). Lookups by the real name keep working.
// Then a GGUF (stories260K with a file name, general.name and an extra tensor name that carry ESC ] … BEL and
// a newline) through every widget that shows tensor or model names: the tensor table, the histograms, the
// codes view, the teaching views, the export plan and its log, the GPTQ / EXL2 pages, the Compare workspace
// and the Evaluate panel. Each shows the escaped form, and no text anywhere in them (labels, items,
// tooltips, plot titles and legends, text boxes) holds a raw control character.
// Last the export page's target-size view after a measurement of that GGUF (an importance matrix of 2 short
// chunks; the model has 260K parameters, so it takes a second): its plan table and summary.
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include <QAbstractButton>
#include <QComboBox>
#include <QLabel>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QTableWidget>
#include <QTextEdit>
#include <QTreeWidget>
#include <fstream>
#include <qcustomplot.h>

#include "codes_view.h"
#include "compare_workspace.h"
#include "evaluate_panel.h"
#include "export_panel.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gptq_export_page.h"
#include "histograms_tab.h"
#include "main_window.h"
#include "model_summary.h"
#include "model_tree.h"
#include "calib/imatrix.h"
#include "teaching_view.h"
#include "tensor_table.h"
#include "target_size_view.h"
#include "tensor_table_model.h"
#include "variants/variants.h"

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

// The GGUF case: a file name, a model name and a tensor name with an OSC sequence and a newline.
const std::string kEvilFile = "evil\x1b]0;owned\x07\n.gguf";
const std::string kEvilModelName = "stories\x1b]2;pwn\x07\nname";
const std::string kEvilTensor = "evil\x1b]0;owned\x07\nname.weight";
const QString kEvilTensorShown = QStringLiteral("evil\\x1b]0;owned\\x07\\nname.weight");

// stories260K.gguf with general.name replaced and one more F32 tensor [4 × 256] (ne {256, 4}).
bool writeEvilGguf(const std::string& path) {
    auto src = qz::GgufFile::open(QZ_TEST_DATA "/models/stories260K/stories260K.gguf");
    if (!src) return false;
    const qz::GgufFile& g = **src;
    qz::GgufWriter w(path);
    bool named = false;
    for (const auto& kv : g.kvs) {
        if (kv.key == "general.name") {
            named = true;
            if (!w.setKv(kv.key, qz::GgufValue::string(kEvilModelName))) return false;
        } else if (!w.setKv(kv.key, kv.value)) {
            return false;
        }
    }
    if (!named && !w.setKv("general.name", qz::GgufValue::string(kEvilModelName))) return false;
    for (const auto& t : g.tensors)
        if (!w.addTensor(t.name, t.ne, t.dtype)) return false;
    if (!w.addTensor(kEvilTensor, {256, 4}, qz::DType::F32)) return false;
    if (!w.begin()) return false;
    for (const auto& t : g.tensors)
        if (!w.writeTensorData(g.tensorBytes(t))) return false;
    std::vector<float> v(1024);
    for (size_t i = 0; i < v.size(); ++i)
        v[i] = float(int(i * 37 % 101) - 50) / 100.0f;
    if (!w.writeTensorData({reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)}))
        return false;
    return w.finish().ok();
}

// Every text a widget tree shows: labels, buttons, combo items, text boxes, item views (text and tooltip),
// plot titles, legends, axis labels and tick labels, tooltips. Line edits are left out (they hold paths
// the user edits and the program uses as they are).
QStringList shownTexts(QWidget* root) {
    QStringList out;
    auto addModel = [&](const QAbstractItemModel* m, const QModelIndex& parent, auto&& self) -> void {
        if (!m) return;
        for (int r = 0; r < m->rowCount(parent); ++r)
            for (int c = 0; c < m->columnCount(parent); ++c) {
                const QModelIndex i = m->index(r, c, parent);
                out << m->data(i, Qt::DisplayRole).toString() << m->data(i, Qt::ToolTipRole).toString();
                if (c == 0 && m->hasChildren(i)) self(m, i, self);
            }
    };
    QList<QWidget*> all = root->findChildren<QWidget*>();
    all.prepend(root);
    for (QWidget* w : all) {
        out << w->toolTip() << w->windowTitle();
        if (auto* l = qobject_cast<QLabel*>(w)) out << l->text();
        if (auto* b = qobject_cast<QAbstractButton*>(w)) out << b->text();
        if (auto* c = qobject_cast<QComboBox*>(w))
            for (int i = 0; i < c->count(); ++i)
                out << c->itemText(i);
        if (auto* e = qobject_cast<QPlainTextEdit*>(w)) out << e->toPlainText();
        if (auto* e = qobject_cast<QTextEdit*>(w)) out << e->toPlainText();
        if (auto* v = qobject_cast<QAbstractItemView*>(w)) addModel(v->model(), QModelIndex(), addModel);
        if (auto* p = qobject_cast<QCustomPlot*>(w)) {
            for (int i = 0; i < p->plotLayout()->elementCount(); ++i)
                if (auto* t = qobject_cast<QCPTextElement*>(p->plotLayout()->elementAt(i))) out << t->text();
            for (int i = 0; i < p->plottableCount(); ++i)
                out << p->plottable(i)->name();
            for (int i = 0; i < p->graphCount(); ++i)
                out << p->graph(i)->name();
            for (QCPAxis* a : p->axisRect() ? p->axisRect()->axes() : QList<QCPAxis*>()) {
                out << a->label();
                if (auto t = a->ticker().dynamicCast<QCPAxisTickerText>())
                    for (const QString& s : t->ticks())
                        out << s;
            }
        }
    }
    return out;
}

bool anyContains(const QStringList& texts, const QString& what) {
    for (const QString& t : texts)
        if (t.contains(what)) return true;
    return false;
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

    void everyWidgetEscapes();
    void targetSizeViewEscapes();
};

// No shown text of the widget holds a raw control character (a newline inside a text is fine: labels and
// logs have several lines; the names' newlines are checked escaped by the callers).
#define QVERIFY_CLEAN(widget)                                                                                \
    do {                                                                                                     \
        for (const QString& t : shownTexts(widget))                                                          \
            QVERIFY2(!hasControl(t), qPrintable(QStringLiteral(#widget ": ") + toDisplay(t)));               \
    } while (0)

void TestDisplayEscape::everyWidgetEscapes() {
    QTemporaryDir dir;
    const std::string path = dir.path().toStdString() + "/" + kEvilFile;
    QVERIFY(writeEvilGguf(path));
    auto opened = qz::openModel(path);
    QVERIFY2(opened, opened ? "" : opened.error().message.c_str());
    ModelPtr model(*opened);
    QVERIFY(model->find(kEvilTensor));
    const QString raw = QString::fromStdString(kEvilTensor);
    const QString shownFile = QStringLiteral("evil\\x1b]0;owned\\x07\\n.gguf");

    // The tensor table after a quantize run over the model.
    {
        qz::QuantizeParams qp;
        qp.spec.bits = 4;
        auto qr = qz::runQuantize(*model, qp, {});
        QVERIFY(qr);
        bool quantized = false;
        for (const auto& t : qr->tensors)
            quantized |= t.name == kEvilTensor;
        QVERIFY(quantized);
        TensorTable table;
        table.show();
        table.model()->setResults(qr->tensors);
        const auto texts = shownTexts(&table);
        QVERIFY(anyContains(texts, kEvilTensorShown));
        QVERIFY_CLEAN(&table);

        // The histograms of the tensor.
        HistogramsTab hist;
        hist.show();
        for (const auto& t : qr->tensors)
            if (t.name == kEvilTensor) hist.showTensor(t, QStringLiteral("absmax 4-bit"), &qp.spec);
        QVERIFY(anyContains(shownTexts(&hist), kEvilTensorShown));
        QVERIFY_CLEAN(&hist);
    }

    // The codes view.
    {
        CodesView codes;
        codes.show();
        codes.setModel(model);
        qz::QuantSpec spec;
        spec.bits = 8;
        codes.setSpec(spec);
        QSignalSpy shown(&codes, &CodesView::windowShown);
        codes.setTensor(raw);
        QVERIFY(shown.wait(20000));
        QVERIFY(anyContains(shownTexts(&codes), kEvilTensorShown));
        QVERIFY(codes.text().contains(kEvilTensorShown));
        QVERIFY_CLEAN(&codes);
    }

    // The teaching views on the tensor (number line and a Q4_K super-block).
    {
        TeachingView teach;
        teach.show();
        teach.setModel(model);
        teach.setTensor(raw);
        teach.setView(TeachingView::NumberLineView);
        QVERIFY(teach.numberLine());
        teach.setView(TeachingView::SuperBlockView);
        QVERIFY(teach.superBlock());
        QVERIFY(anyContains(shownTexts(&teach), kEvilTensorShown));
        QVERIFY_CLEAN(&teach);
    }

    // The export plan, the GPTQ / EXL2 pages (a GGUF is refused, naming the file).
    {
        ExportPanel exp;
        exp.show();
        QSignalSpy planned(&exp, &ExportPanel::planShown);
        exp.setModel(model);
        QVERIFY(planned.wait(30000));
        const auto texts = shownTexts(&exp);
        QVERIFY(anyContains(texts, kEvilTensorShown));
        QVERIFY(anyContains(texts, shownFile));
        QVERIFY_CLEAN(&exp);
        QVERIFY(exp.gptqPage()->summary()->text().contains(shownFile));
    }

    // The Compare workspace: the tensor box shows the escaped name and selects by the real one; a GGUF
    // variant named after its file.
    {
        CompareWorkspace cmp;
        cmp.show();
        cmp.setModel(model);
        QVERIFY(cmp.tensorBox()->findText(kEvilTensorShown) >= 0);
        cmp.setTensor(raw);
        QCOMPARE(cmp.tensor(), raw);
        auto spec = qz::parseMethodSpec("absmax:8:tensor");
        QVERIFY(spec);
        auto v = qz::makeFakeQuantVariant(*model, *spec);
        QVERIFY(v);
        v->name = kEvilModelName;
        cmp.addVariant(std::move(*v));
        QSignalSpy shown(&cmp, &CompareWorkspace::histogramsShown);
        cmp.setTensor(QString::fromStdString(model->tensors.front().name));
        cmp.setTensor(raw);
        QVERIFY(shown.wait(30000) || !shown.isEmpty());
        const auto texts = shownTexts(&cmp);
        QVERIFY(anyContains(texts, kEvilTensorShown));
        QVERIFY(anyContains(texts, QStringLiteral("stories\\x1b]2;pwn\\x07\\nname")));
        QVERIFY_CLEAN(&cmp);
    }

    // The Evaluate panel: a GGUF variant is named after its file.
    {
        EvaluatePanel eval;
        eval.show();
        eval.setModel(model);
        QVERIFY(eval.addGgufFile(QString::fromStdString(path)));
        QVERIFY(anyContains(shownTexts(&eval), shownFile));
        QVERIFY_CLEAN(&eval);
    }
}

void TestDisplayEscape::targetSizeViewEscapes() {
    QTemporaryDir dir;
    const std::string path = dir.path().toStdString() + "/" + kEvilFile;
    QVERIFY(writeEvilGguf(path));
    auto opened = qz::openModel(path);
    QVERIFY2(opened, opened ? "" : opened.error().message.c_str());
    ModelPtr model(*opened);

    std::ifstream f(QZ_TEST_DATA "/text/shakespeare-valid.txt");
    std::string text(4096, '\0');
    f.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(f.gcount()));
    qz::ImatrixParams ip;
    ip.nCtx = 64;
    ip.nChunks = 2;
    ip.processOutput = true;
    auto im = qz::computeImatrix(*model, text, ip);
    QVERIFY2(im, im ? "" : im.error().message.c_str());
    const QString imPath = dir.filePath(QStringLiteral("imatrix.gguf"));
    QVERIFY(qz::writeImatrixGguf(*im, imPath.toStdString()).ok());

    TargetSizeView view;
    view.show();
    view.setModel(model);
    view.setImatrixSource([imPath] { return imPath; });
    QSignalSpy measured(&view, &TargetSizeView::measured);
    QSignalSpy planned(&view, &TargetSizeView::planShown);
    view.measureButton()->click();
    QVERIFY(measured.wait(60000));
    QVERIFY(planned.wait(30000) || !planned.isEmpty());
    // The extra tensor is one of the measured ones, under its real name; the table shows it escaped.
    bool measuredEvil = false;
    for (const auto& t : view.measurement()->table.tensors)
        measuredEvil |= t.name == kEvilTensor && t.quantizable;
    QVERIFY(measuredEvil);
    bool listed = false;
    for (int r = 0; r < view.table()->rowCount(); ++r)
        listed |= view.table()->item(r, 0)->text() == kEvilTensorShown;
    QVERIFY(listed);
    QVERIFY_CLEAN(&view);
}

QTEST_MAIN(TestDisplayEscape)
#include "test_display_escape.moc"

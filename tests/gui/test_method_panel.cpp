// The method panel is built from the MethodRegistry: registering a descriptor adds it to the
// picker without touching the panel (an unavailable method shows disabled); choices map onto the
// engine's QuantSpec / TensorFilter; the regex is validated while typing.
#include <QComboBox>
#include <QLineEdit>
#include <QPushButton>
#include <QStandardItemModel>
#include <QSpinBox>
#include <QTest>

#include "method_options_editor.h"
#include "method_panel.h"
#include "method_registry.h"

using namespace qz::ui;

namespace {
// A method-specific editor as a plug-in would bring one: here it owns the group size and rejects
// odd values.
class GroupOptions : public MethodOptionsEditor {
public:
    explicit GroupOptions(QWidget* parent) : MethodOptionsEditor(parent), spin(new QSpinBox(this)) {
        spin->setRange(1, 4096);
        connect(spin, &QSpinBox::valueChanged, this, &MethodOptionsEditor::changed);
    }
    void applyTo(qz::QuantSpec& s) const override { s.groupSize = spin->value(); }
    void loadFrom(const qz::QuantSpec& s) override { spin->setValue(s.groupSize); }
    QString validationError() const override {
        return spin->value() % 2 ? QStringLiteral("group size must be even") : QString();
    }
    QSpinBox* spin;
};
}  // namespace

class TestMethodPanel : public QObject {
    Q_OBJECT
private slots:
    void registryDrivesPicker() {
        const int builtIn = int(MethodRegistry::instance().methods().size());
        QVERIFY(builtIn >= 2);
        QVERIFY(MethodRegistry::instance().find(QStringLiteral("absmax")));
        QVERIFY(MethodRegistry::instance().find(QStringLiteral("ZEROPOINT")));  // case-insensitive
        MethodDescriptor future;
        future.id = QStringLiteral("test-future-method");  // an id nobody registers
        future.displayName = QStringLiteral("Future method (no engine job yet)");
        future.minBits = future.maxBits = future.defaultBits = 4;
        MethodRegistry::instance().add(future);

        MethodPanel panel;
        auto* combo = panel.findChild<QComboBox*>(QStringLiteral("methodCombo"));
        QVERIFY(combo);
        QCOMPARE(combo->count(), builtIn + 1);
        QCOMPARE(combo->itemText(builtIn), future.displayName);
        auto* model = qobject_cast<QStandardItemModel*>(combo->model());
        QVERIFY(model && !model->item(builtIn)->isEnabled());  // no engine job yet
    }

    void choicesMapToSpec() {
        MethodPanel panel;
        panel.setModelLoaded(true);
        qz::QuantSpec s;
        s.method = qz::QuantMethod::ZeroPoint;
        s.bits = 3;
        s.granularity = qz::Granularity::Group;
        s.groupSize = 48;  // not a preset: goes to the custom field
        panel.setSpec(s);
        const qz::QuantSpec got = panel.spec();
        QCOMPARE(got.method, qz::QuantMethod::ZeroPoint);
        QCOMPARE(got.bits, 3);
        QCOMPARE(got.granularity, qz::Granularity::Group);
        QCOMPARE(got.groupSize, 48);
        QCOMPARE(panel.methodId(), QStringLiteral("zeropoint"));

        panel.setSelectionMode(qz::TensorSelection::Names);
        QVERIFY(!panel.runButton()->isEnabled());  // nothing selected in the tree yet
        panel.setTreeSelectionCount(2);
        QVERIFY(panel.runButton()->isEnabled());
        const auto f = panel.filter({QStringLiteral("a.weight"), QStringLiteral("b.weight")});
        QCOMPARE(f.mode, qz::TensorSelection::Names);
        QCOMPARE(f.names.size(), size_t(2));

        panel.setSelectionMode(qz::TensorSelection::Regex);
        auto* edit = panel.findChild<QLineEdit*>(QStringLiteral("regexEdit"));
        QVERIFY(edit);
        QTest::keyClicks(edit, QStringLiteral("layers\\.[0-"));
        QVERIFY(!panel.runButton()->isEnabled());
        QVERIFY(panel.validationError().startsWith(QStringLiteral("invalid regular expression")));
        QTest::keyClicks(edit, QStringLiteral("2]\\."));
        QVERIFY(panel.validationError().isEmpty());
        QVERIFY(panel.runButton()->isEnabled());
        QCOMPARE(panel.filter({}).regex, std::string("layers\\.[0-2]\\."));

        panel.setRunning(true);
        QVERIFY(!panel.runButton()->isEnabled());
        QVERIFY(panel.cancelButton()->isEnabled());
    }

    void methodBringsItsOptions() {
        MethodDescriptor d;
        d.id = QStringLiteral("absmax-custom-groups");
        d.displayName = QStringLiteral("Absmax, own group editor");
        d.granularities = {qz::Granularity::Group};
        d.simple = qz::QuantMethod::Absmax;
        d.createOptions = [](QWidget* parent) { return new GroupOptions(parent); };
        MethodRegistry::instance().add(d);

        MethodPanel panel;
        panel.setModelLoaded(true);
        QVERIFY(!panel.optionsEditor());  // absmax: no own options
        auto* combo = panel.findChild<QComboBox*>(QStringLiteral("methodCombo"));
        combo->setCurrentIndex(combo->findData(d.id));
        auto* editor = dynamic_cast<GroupOptions*>(panel.optionsEditor());
        QVERIFY(editor);
        editor->spin->setValue(40);
        QCOMPARE(panel.spec().groupSize, 40);
        QCOMPARE(panel.spec().granularity, qz::Granularity::Group);
        QVERIFY(panel.runButton()->isEnabled());
        editor->spin->setValue(41);
        QCOMPARE(panel.validationError(), QStringLiteral("group size must be even"));
        QVERIFY(!panel.runButton()->isEnabled());
        combo->setCurrentIndex(combo->findData(QStringLiteral("absmax")));
        QVERIFY(!panel.optionsEditor());  // the editor goes with its method
        QVERIFY(panel.runButton()->isEnabled());
    }
};

QTEST_MAIN(TestMethodPanel)
#include "test_method_panel.moc"

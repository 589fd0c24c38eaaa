#include "method_panel.h"

#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QVBoxLayout>
#include <regex>

#include "method_options_editor.h"
#include "method_registry.h"
#include "qt_types.h"

namespace qz::ui {

namespace {
constexpr int kCustomGroup = -1;

QString regexError(const QString& pattern) {
    if (pattern.isEmpty()) return QStringLiteral("enter a regular expression");
    try {
        std::regex re(toStd(pattern), std::regex::ECMAScript);  // the engine's dialect
    } catch (const std::regex_error& e) {
        return QStringLiteral("invalid regular expression: ") + QString::fromUtf8(e.what());
    }
    return {};
}
}  // namespace

MethodPanel::MethodPanel(QWidget* parent) : QWidget(parent) {
    auto* methodBox = new QGroupBox(tr("Method"), this);
    auto* form = new QFormLayout(methodBox);
    m_method = new QComboBox(methodBox);
    m_method->setObjectName(QStringLiteral("methodCombo"));
    for (const auto& d : MethodRegistry::instance().methods()) {
        m_method->addItem(d.displayName, d.id);
        if (!d.available()) {  // listed, greyed out until its engine job exists
            auto* item = qobject_cast<QStandardItemModel*>(m_method->model());
            if (item) item->item(m_method->count() - 1)->setEnabled(false);
        }
    }
    m_methodHelp = new QLabel(methodBox);
    m_methodHelp->setWordWrap(true);
    m_methodHelp->setStyleSheet(QStringLiteral("color: palette(mid);"));
    m_bits = new QSpinBox(methodBox);
    m_bits->setObjectName(QStringLiteral("bitsSpin"));
    m_bits->setSuffix(tr(" bit"));
    m_granularity = new QComboBox(methodBox);
    m_granularity->setObjectName(QStringLiteral("granularityCombo"));
    m_groupSize = new QComboBox(methodBox);
    for (int g : {32, 64, 128}) m_groupSize->addItem(QString::number(g), g);
    m_groupSize->addItem(tr("Custom…"), kCustomGroup);
    m_groupSize->setCurrentIndex(2);
    m_customGroup = new QSpinBox(methodBox);
    m_customGroup->setRange(1, 1 << 20);
    m_customGroup->setValue(256);
    auto* groupRow = new QHBoxLayout;
    groupRow->addWidget(m_groupSize);
    groupRow->addWidget(m_customGroup);
    form->addRow(tr("Method"), m_method);
    form->addRow(m_methodHelp);
    form->addRow(tr("Bits"), m_bits);
    form->addRow(tr("Granularity"), m_granularity);
    form->addRow(tr("Group size"), groupRow);
    m_optionsHost = new QWidget(methodBox);
    auto* optionsLayout = new QVBoxLayout(m_optionsHost);
    optionsLayout->setContentsMargins(0, 0, 0, 0);
    form->addRow(m_optionsHost);

    auto* tensorBox = new QGroupBox(tr("Tensors"), this);
    auto* tform = new QVBoxLayout(tensorBox);
    m_selection = new QComboBox(tensorBox);
    m_selection->setObjectName(QStringLiteral("selectionCombo"));
    m_selection->addItem(tr("All tensors"), int(qz::TensorSelection::All));
    m_selection->addItem(tr("All 2-D weights"), int(qz::TensorSelection::All2D));
    m_selection->addItem(tr("Selection in the tree"), int(qz::TensorSelection::Names));
    m_selection->addItem(tr("Regular expression"), int(qz::TensorSelection::Regex));
    m_selection->setCurrentIndex(1);
    m_regex = new QLineEdit(tensorBox);
    m_regex->setObjectName(QStringLiteral("regexEdit"));
    m_regex->setPlaceholderText(tr("e.g. mlp\\.(up|down)_proj"));
    m_regex->setClearButtonEnabled(true);
    m_selectionInfo = new QLabel(tensorBox);
    m_selectionInfo->setWordWrap(true);
    tform->addWidget(m_selection);
    tform->addWidget(m_regex);
    tform->addWidget(m_selectionInfo);

    m_run = new QPushButton(QIcon(QStringLiteral(":/icons/run.svg")), tr("Run"), this);
    m_run->setObjectName(QStringLiteral("runButton"));
    m_cancel = new QPushButton(QIcon(QStringLiteral(":/icons/cancel.svg")), tr("Cancel"), this);
    m_cancel->setObjectName(QStringLiteral("cancelButton"));
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_run);
    buttons->addWidget(m_cancel);
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_progress->setValue(0);
    m_progress->setTextVisible(true);
    m_progress->setFormat(QStringLiteral("%p%"));
    m_status = new QLabel(this);
    m_status->setWordWrap(true);

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(methodBox);
    layout->addWidget(tensorBox);
    layout->addLayout(buttons);
    layout->addWidget(m_progress);
    layout->addWidget(m_status);
    layout->addStretch(1);

    connect(m_method, &QComboBox::currentIndexChanged, this, [this] { onMethodChanged(); });
    for (QComboBox* c : {m_granularity, m_groupSize, m_selection})
        connect(c, &QComboBox::currentIndexChanged, this, [this] { updateEnabled(); emit choicesChanged(); });
    connect(m_bits, &QSpinBox::valueChanged, this, &MethodPanel::choicesChanged);
    connect(m_customGroup, &QSpinBox::valueChanged, this, &MethodPanel::choicesChanged);
    connect(m_regex, &QLineEdit::textChanged, this, [this] { updateEnabled(); emit choicesChanged(); });
    connect(m_run, &QPushButton::clicked, this, &MethodPanel::runRequested);
    connect(m_cancel, &QPushButton::clicked, this, &MethodPanel::cancelRequested);
    onMethodChanged();
}

void MethodPanel::onMethodChanged() {
    const auto* d = MethodRegistry::instance().find(methodId());
    if (!d) return;
    m_methodHelp->setText(d->description);
    m_method->setToolTip(d->description);
    const int keep = m_bits->value();
    m_bits->setRange(d->minBits, d->maxBits);
    m_bits->setValue(keep >= d->minBits && keep <= d->maxBits ? keep : d->defaultBits);
    const QVariant g = m_granularity->currentData();
    m_granularity->blockSignals(true);
    m_granularity->clear();
    for (auto gr : d->granularities) m_granularity->addItem(granularityLabel(gr), int(gr));
    const int idx = m_granularity->findData(g);
    m_granularity->setCurrentIndex(idx >= 0 ? idx : 0);
    m_granularity->blockSignals(false);
    m_bits->setEnabled(d->minBits < d->maxBits);
    m_granularity->setEnabled(!d->granularities.isEmpty());
    delete m_options;  // the previous method's own options
    m_options = d->createOptions ? d->createOptions(m_optionsHost) : nullptr;
    if (m_options) {
        m_optionsHost->layout()->addWidget(m_options);
        connect(m_options, &MethodOptionsEditor::changed, this, [this] {
            updateEnabled();
            emit choicesChanged();
        });
    }
    m_optionsHost->setVisible(m_options != nullptr);
    updateEnabled();
    emit choicesChanged();
}

QString MethodPanel::methodId() const { return m_method->currentData().toString(); }

int MethodPanel::groupSize() const {
    const int g = m_groupSize->currentData().toInt();
    return g == kCustomGroup ? m_customGroup->value() : g;
}

qz::QuantSpec MethodPanel::spec() const {
    qz::QuantSpec s;
    if (const auto* d = MethodRegistry::instance().find(methodId()); d && d->simple) s.method = *d->simple;
    s.bits = m_bits->value();
    if (m_granularity->count() > 0) s.granularity = static_cast<qz::Granularity>(m_granularity->currentData().toInt());
    s.groupSize = groupSize();
    if (m_options) m_options->applyTo(s);
    return s;
}

void MethodPanel::setSpec(const qz::QuantSpec& s) {
    if (const auto* d = MethodRegistry::instance().find(s.method))
        m_method->setCurrentIndex(m_method->findData(d->id));
    if (m_options) m_options->loadFrom(s);
    m_bits->setValue(s.bits);
    const int gi = m_granularity->findData(int(s.granularity));
    if (gi >= 0) m_granularity->setCurrentIndex(gi);
    const int pi = m_groupSize->findData(s.groupSize);
    if (pi >= 0) {
        m_groupSize->setCurrentIndex(pi);
    } else {
        m_groupSize->setCurrentIndex(m_groupSize->findData(kCustomGroup));
        m_customGroup->setValue(s.groupSize);
    }
    updateEnabled();
}

qz::TensorSelection MethodPanel::selectionMode() const {
    return static_cast<qz::TensorSelection>(m_selection->currentData().toInt());
}

void MethodPanel::setSelectionMode(qz::TensorSelection mode) {
    m_selection->setCurrentIndex(m_selection->findData(int(mode)));
}

void MethodPanel::setRegex(const QString& regex) { m_regex->setText(regex); }

void MethodPanel::setTreeSelectionCount(int n) {
    m_treeSelection = n;
    updateEnabled();
}

qz::TensorFilter MethodPanel::filter(const QStringList& treeSelection) const {
    qz::TensorFilter f;
    f.mode = selectionMode();
    if (f.mode == qz::TensorSelection::Names)
        for (const auto& n : treeSelection) f.names.push_back(toStd(n));
    if (f.mode == qz::TensorSelection::Regex) f.regex = toStd(m_regex->text());
    return f;
}

QString MethodPanel::validationError() const {
    if (!m_modelLoaded) return tr("Open a model first.");
    if (selectionMode() == qz::TensorSelection::Regex) return regexError(m_regex->text());
    if (selectionMode() == qz::TensorSelection::Names && m_treeSelection == 0)
        return tr("Select tensors in the model tree (Ctrl/Shift-click for several).");
    if (m_options)
        if (const QString e = m_options->validationError(); !e.isEmpty()) return e;
    if (auto st = spec().validate(); !st) return toQ(st.error().message);
    return {};
}

void MethodPanel::updateEnabled() {
    const bool group = spec().granularity == qz::Granularity::Group && m_granularity->count() > 0;
    m_groupSize->setEnabled(group);
    m_customGroup->setVisible(group && m_groupSize->currentData().toInt() == kCustomGroup);
    const auto mode = selectionMode();
    m_regex->setVisible(mode == qz::TensorSelection::Regex);
    const QString err = validationError();
    const bool regexBad = mode == qz::TensorSelection::Regex && !regexError(m_regex->text()).isEmpty();
    m_regex->setStyleSheet(regexBad ? QStringLiteral("QLineEdit { background: #ffd6d6; }") : QString());
    if (mode == qz::TensorSelection::Names && m_treeSelection > 0)
        m_selectionInfo->setText(tr("%n tensor(s) selected in the tree.", nullptr, m_treeSelection));
    else
        m_selectionInfo->setText(err);
    m_selectionInfo->setStyleSheet(err.isEmpty() ? QString() : QStringLiteral("color: #b00020;"));
    m_run->setEnabled(!m_running && err.isEmpty());
    m_run->setToolTip(err);
    m_cancel->setEnabled(m_running);
}

void MethodPanel::setModelLoaded(bool loaded) {
    m_modelLoaded = loaded;
    updateEnabled();
}

void MethodPanel::setRunning(bool running) {
    m_running = running;
    if (running) {
        m_progress->setValue(0);
        m_progress->setFormat(QStringLiteral("%p%"));
    }
    updateEnabled();
}

void MethodPanel::setProgress(double fraction, const QString& step, double etaSeconds) {
    m_progress->setValue(static_cast<int>(fraction * 1000.0 + 0.5));
    const QString eta = etaSeconds < 0 ? tr("estimating…")
                                       : etaSeconds < 60 ? tr("%1 s left").arg(etaSeconds, 0, 'f', 1)
                                                         : tr("%1 min left").arg(etaSeconds / 60.0, 0, 'f', 1);
    m_progress->setFormat(fraction >= 1.0 ? tr("%p% — done") : QStringLiteral("%p% — ") + eta);
    m_status->setText(step);
}

void MethodPanel::setStatusText(const QString& text) { m_status->setText(text); }

}  // namespace qz::ui

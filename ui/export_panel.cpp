#include "export_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRegularExpression>
#include <QSplitter>
#include <QStackedWidget>
#include <QTabWidget>
#include <QTableWidget>
#include <QVBoxLayout>

#include "exl2_export_page.h"
#include "gptq_export_page.h"
#include "target_size_view.h"
#include "type_compare_view.h"

namespace qz::ui {

namespace {
enum PlanColumn { ColIndex, ColName, ColShape, ColType, ColBytes, ColReason, ColCount };
const char* const kTensorTypes[] = {"F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0",
                                    "Q4_K", "Q4_1", "Q4_0", "Q3_K", "Q2_K"};

QString neText(const std::vector<int64_t>& ne) {
    QStringList parts;
    for (int64_t d : ne) parts << QString::number(d);
    return QLatin1Char('[') + parts.join(QStringLiteral(", ")) + QLatin1Char(']');
}

QString mib(uint64_t b) { return QStringLiteral("%1 MiB").arg(double(b) / 1048576.0, 0, 'f', 2); }
}  // namespace

ExportPanel::ExportPanel(QWidget* parent)
    : QWidget(parent), m_runner(new BackgroundJob(this)), m_planner(new BackgroundJob(this)) {
    m_format = new QComboBox(this);
    m_format->addItem(tr("GGUF (llama.cpp)"), QStringLiteral("gguf"));
    m_type = new QComboBox(this);
    for (const auto& t : qz::ggufExportTypes()) m_type->addItem(toQ(t));
    m_type->setCurrentText(QStringLiteral("Q4_K_M"));
    m_output = new QLineEdit(this);
    auto* browseOut = new QPushButton(tr("…"), this);
    m_imatrix = new QLineEdit(this);
    m_imatrix->setPlaceholderText(tr("optional: llama-imatrix file (.gguf or .dat)"));
    auto* browseIm = new QPushButton(tr("…"), this);
    m_pure = new QCheckBox(tr("Pure (no mix rules)"), this);
    m_outputType = new QComboBox(this);
    m_embdType = new QComboBox(this);
    for (QComboBox* b : {m_outputType, m_embdType}) {
        b->addItem(tr("as the mix says"), QString());
        for (const char* t : kTensorTypes) b->addItem(QString::fromLatin1(t), QString::fromLatin1(t));
    }

    auto* form = new QFormLayout;
    form->addRow(tr("Type"), m_type);
    auto* outRow = new QHBoxLayout;
    outRow->addWidget(m_output, 1);
    outRow->addWidget(browseOut);
    form->addRow(tr("Output"), outRow);
    auto* imRow = new QHBoxLayout;
    imRow->addWidget(m_imatrix, 1);
    imRow->addWidget(browseIm);
    form->addRow(tr("Importance matrix"), imRow);
    form->addRow(tr("output.weight"), m_outputType);
    form->addRow(tr("token_embd.weight"), m_embdType);
    form->addRow(QString(), m_pure);
    form->addRow(tr("Split / metadata"), buildSplitAndKvFields());

    m_plan = new QTableWidget(0, ColCount, this);
    m_plan->setHorizontalHeaderLabels({tr("#"), tr("tensor"), tr("ne"), tr("type"), tr("bytes"), tr("why")});
    m_plan->horizontalHeader()->setSectionResizeMode(ColName, QHeaderView::ResizeToContents);
    m_plan->horizontalHeader()->setSectionResizeMode(ColReason, QHeaderView::Stretch);
    m_plan->verticalHeader()->hide();
    m_plan->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_plan->setSelectionMode(QAbstractItemView::SingleSelection);
    m_summary = new QLabel(tr("Open a model to plan an export."), this);
    m_summary->setWordWrap(true);

    m_run = new QPushButton(tr("Export"), this);
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setEnabled(false);
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_eta = new QLabel(this);
    auto* runRow = new QHBoxLayout;
    runRow->addWidget(m_run);
    runRow->addWidget(m_cancel);
    runRow->addWidget(m_progress, 1);
    runRow->addWidget(m_eta);

    m_log = new QPlainTextEdit(this);
    m_log->setReadOnly(true);
    m_log->setLineWrapMode(QPlainTextEdit::NoWrap);
    m_log->setFont(QFont(QStringLiteral("monospace")));
    m_compare = new TypeCompareView(this);
    auto* bottom = new QTabWidget(this);
    bottom->addTab(m_log, tr("Log"));
    bottom->addTab(m_compare, tr("Compare types"));
    m_target = new TargetSizeView(this);
    m_target->setImatrixSource([this] { return m_imatrix->text(); });
    bottom->addTab(m_target, tr("Target size"));
    connect(m_target, &TargetSizeView::applyRequested, this, &ExportPanel::applyTargetPlan);

    auto* top = new QWidget(this);
    auto* topLay = new QVBoxLayout(top);
    topLay->setContentsMargins(0, 0, 0, 0);
    topLay->addLayout(form);
    topLay->addWidget(m_plan, 1);
    topLay->addWidget(m_summary);
    topLay->addLayout(runRow);
    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(top);
    split->addWidget(bottom);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    // The format box above the pages: GGUF (the widgets above), then the calibrated formats.
    m_pages = new QStackedWidget(this);
    m_pages->addWidget(split);
    auto* formatRow = new QFormLayout;
    formatRow->addRow(tr("Format"), m_format);
    auto* lay = new QVBoxLayout(this);
    lay->addLayout(formatRow);
    lay->addWidget(m_pages, 1);
    connect(m_format, &QComboBox::currentIndexChanged, m_pages, &QStackedWidget::setCurrentIndex);
    m_gptq = new GptqExportPage(this);
    addFormatPage(QStringLiteral("gptq"), tr("GPTQ (AutoGPTQ / transformers)"), m_gptq);
    m_exl2 = new Exl2ExportPage(this);
    addFormatPage(QStringLiteral("exl2"), tr("EXL2 (exllamav2)"), m_exl2);

    m_planTimer.setSingleShot(true);
    m_planTimer.setInterval(150);
    connect(&m_planTimer, &QTimer::timeout, this, [this] {
        if (m_model) plan();
    });
    connect(m_type, &QComboBox::currentTextChanged, this, [this] { onTypeChanged(); });
    connect(m_pure, &QCheckBox::toggled, this, [this] { schedulePlan(); });
    connect(m_outputType, &QComboBox::currentIndexChanged, this, [this] { schedulePlan(); });
    connect(m_embdType, &QComboBox::currentIndexChanged, this, [this] { schedulePlan(); });
    connect(m_imatrix, &QLineEdit::editingFinished, this, [this] { schedulePlan(); });
    connect(m_output, &QLineEdit::textEdited, this, [this] { m_outputEdited = true; });
    connect(browseOut, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getSaveFileName(this, tr("Export GGUF"), m_output->text(), tr("GGUF (*.gguf)"));
        if (!f.isEmpty()) {
            m_output->setText(f);
            m_outputEdited = true;
        }
    });
    connect(browseIm, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Importance matrix"), QString(),
                                                       tr("imatrix (*.gguf *.dat);;All files (*)"));
        if (!f.isEmpty()) {
            m_imatrix->setText(f);
            schedulePlan();
        }
    });
    connect(m_plan, &QTableWidget::itemSelectionChanged, this, [this] {
        const auto rows = m_plan->selectionModel()->selectedRows();
        if (rows.isEmpty()) return;
        const QString source = m_plan->item(rows.first().row(), ColName)->data(Qt::UserRole).toString();
        m_compare->showTensor(source);
    });
    connect(m_run, &QPushButton::clicked, this, [this] { startExport(); });
    connect(m_cancel, &QPushButton::clicked, this, [this] { m_runner->cancel(); });

    connect(m_planner, &BackgroundJob::failed, this, [this](const QString& msg) {
        m_summary->setText(tr("Cannot export: %1").arg(msg));
        m_run->setEnabled(false);
    });
    connect(m_runner, &BackgroundJob::progress, this, [this](double f, const QString& step, double eta) {
        m_progress->setValue(int(f * 1000));
        m_eta->setText(eta < 0 ? step : tr("%1 — ETA %2 s").arg(step).arg(qRound(eta)));
    });
    connect(m_runner, &BackgroundJob::failed, this, [this](const QString& msg) {
        setRunning(false);
        m_progress->setValue(0);
        m_eta->setText(tr("failed"));
        m_log->appendPlainText(tr("Export failed: %1").arg(msg));
    });
    connect(m_runner, &BackgroundJob::cancelled, this, [this] {
        setRunning(false);
        m_progress->setValue(0);
        m_eta->setText(tr("cancelled"));
        m_log->appendPlainText(tr("Export cancelled: nothing was written."));
    });
    setEnabled(false);
}

void ExportPanel::addFormatPage(const QString& id, const QString& label, CalibratedExportPage* page) {
    m_format->addItem(label, id);
    m_pages->addWidget(page);
    m_formatPages.append(page);
    connect(page, &CalibratedExportPage::runningChanged, m_format, [this](bool on) { m_format->setEnabled(!on); });
    connect(page, &CalibratedExportPage::variantReady, this, &ExportPanel::variantReady);
    connect(page, &CalibratedExportPage::evalVariantReady, this, &ExportPanel::evalVariantReady);
    connect(page, &CalibratedExportPage::exportFinished, this, [this, id](const QString& dir) { emit folderExported(id, dir); });
    page->setModel(m_model);
}

bool ExportPanel::setFormat(const QString& id) {
    const int i = m_format->findData(id);
    if (i < 0) return false;
    m_format->setCurrentIndex(i);
    return true;
}

void ExportPanel::setModel(ModelPtr model) {
    if (m_runner->isRunning()) m_runner->cancel();
    m_model = std::move(model);
    for (CalibratedExportPage* p : m_formatPages) p->setModel(m_model);
    m_edits.clear();
    m_outputEdited = false;
    m_plan->setRowCount(0);
    m_log->clear();
    m_compare->setModel(m_model);
    m_target->setModel(m_model);
    setEnabled(m_model != nullptr);
    if (m_model) {
        m_output->setText(defaultOutputFor(m_type->currentText()));
        schedulePlan();
    }
}

QString ExportPanel::defaultOutputFor(const QString& type) const {
    if (!m_model) return QString();
    QString base = toQ(m_model->path);
    while (base.size() > 1 && base.endsWith(QLatin1Char('/'))) base.chop(1);
    if (base.endsWith(QStringLiteral(".gguf"))) base.chop(5);
    return base + QLatin1Char('.') + type + QStringLiteral(".gguf");
}

void ExportPanel::onTypeChanged() {
    if (!m_outputEdited) m_output->setText(defaultOutputFor(m_type->currentText()));
    m_edits.clear();  // a new mix: per-tensor edits of the old one no longer apply
    schedulePlan();
}

void ExportPanel::schedulePlan() {
    if (m_model && !m_filling) m_planTimer.start();
}

qz::GgufExportParams ExportPanel::params() const {
    qz::GgufExportParams p;
    p.type = toStd(m_type->currentText());
    p.outputPath = toStd(m_output->text());
    p.imatrixPath = toStd(m_imatrix->text().trimmed());
    p.pure = m_pure->isChecked();
    if (auto t = qz::dtypeFromName(toStd(m_outputType->currentData().toString()))) p.outputTensorType = *t;
    if (auto t = qz::dtypeFromName(toStd(m_embdType->currentData().toString()))) p.tokenEmbeddingType = *t;
    for (auto it = m_edits.begin(); it != m_edits.end(); ++it)
        if (auto t = qz::dtypeFromName(toStd(it.value())))
            p.overrides.push_back({toStd(QLatin1Char('^') + QRegularExpression::escape(it.key()) + QLatin1Char('$')), *t});
    splitAndKvParams(p);  // errors are shown by plan() and startExport()
    return p;
}

void ExportPanel::showPlan(const ExportResultPtr& plan) {
    m_filling = true;
    m_plan->setRowCount(static_cast<int>(plan->tensors.size()));
    for (int i = 0; i < m_plan->rowCount(); ++i) {
        const auto& t = plan->tensors[size_t(i)];
        auto* idx = new QTableWidgetItem(QString::number(i + 1));
        auto* name = new QTableWidgetItem(toDisplay(t.name)); // shown escaped; the raw name is the data
        name->setData(Qt::UserRole, toQ(t.sourceName));
        name->setToolTip(tr("in the model: %1").arg(toDisplay(t.sourceName)));
        for (auto* it : {idx, name}) it->setFlags(it->flags() & ~Qt::ItemIsEditable);
        m_plan->setItem(i, ColIndex, idx);
        m_plan->setItem(i, ColName, name);
        auto* shape = new QTableWidgetItem(neText(t.ne));
        shape->setFlags(shape->flags() & ~Qt::ItemIsEditable);
        m_plan->setItem(i, ColShape, shape);
        const QString type = toQ(std::string(qz::dtypeName(t.to)));
        const bool quantizable = t.ne.size() >= 2;
        if (quantizable) {
            auto* box = new QComboBox(m_plan);
            for (const char* ty : kTensorTypes) box->addItem(QString::fromLatin1(ty));
            if (box->findText(type) < 0) box->addItem(type);
            box->setCurrentText(type);
            const QString tensorName = toQ(t.name);
            connect(box, &QComboBox::currentTextChanged, this, [this, tensorName](const QString& v) {
                m_edits[tensorName] = v;
                schedulePlan();
            });
            m_plan->setCellWidget(i, ColType, box);
        } else {
            m_plan->removeCellWidget(i, ColType);
        }
        auto* typeItem = new QTableWidgetItem(type);
        typeItem->setFlags(typeItem->flags() & ~Qt::ItemIsEditable);
        m_plan->setItem(i, ColType, typeItem);
        auto* bytes = new QTableWidgetItem(QString::number(t.bytesAfter));
        bytes->setFlags(bytes->flags() & ~Qt::ItemIsEditable);
        m_plan->setItem(i, ColBytes, bytes);
        auto* why =
            new QTableWidgetItem(m_edits.contains(toQ(t.name)) ? tr("your choice") : toDisplay(t.reason));
        why->setFlags(why->flags() & ~Qt::ItemIsEditable);
        m_plan->setItem(i, ColReason, why);
    }
    m_filling = false;
    QString text = tr("%1: %2 tensors, %3 parameters → %4 (%5 bits per weight)")
                       .arg(toQ(plan->type))
                       .arg(plan->tensors.size())
                       .arg(plan->parameters)
                       .arg(mib(plan->fileBytes))
                       .arg(plan->bitsPerWeight, 0, 'f', 4);
    if (!plan->splitFirstTensor.empty())
        text += tr(" in %1 files, the first %2").arg(plan->paths.size()).arg(toDisplay(plan->paths.front()));
    for (const auto& n : plan->notes)
        if (n.rfind("dropped", 0) != 0) text += QLatin1Char('\n') + toDisplay(n);
    m_summary->setText(text);
    m_run->setEnabled(!m_runner->isRunning());
    emit planShown();
}

void ExportPanel::plan() {
    qz::GgufExportParams p = params();
    p.dryRun = true;
    m_planner->cancel();  // superseded: it stops at its next report, its plan is dropped
    if (const QString err = splitAndKvParams(p); !err.isEmpty()) {
        m_summary->setText(err);
        m_run->setEnabled(false);
        return;
    }
    ModelPtr model = m_model;
    m_planner->run<ExportResultPtr>(
        [model, p](const BackgroundJob::Context& ctx) -> qz::Result<ExportResultPtr> {
            auto r = qz::exportGguf(*model, p, ctx.progress);
            if (!r) return r.error();
            return std::make_shared<const qz::GgufExportResult>(std::move(*r));
        },
        [this](ExportResultPtr&& plan) { showPlan(plan); });
}

void ExportPanel::logTensor(const qz::GgufTensorLog& t) {
    m_log->appendPlainText(QStringLiteral("%1 %2 %3 → %4  %5 → %6")
                               .arg(toDisplay(t.name), -34)
                               .arg(neText(t.ne), -14)
                               .arg(toQ(std::string(qz::dtypeName(t.from))), 5)
                               .arg(toQ(std::string(qz::dtypeName(t.to))), -5)
                               .arg(mib(t.bytesBefore), 10)
                               .arg(mib(t.bytesAfter), 10));
}

void ExportPanel::showExported(const ExportResultPtr& r) {
    setRunning(false);
    m_progress->setValue(1000);
    const QString msg = tr("Wrote %1: %2 (%3 bits per weight) in %4 s")
                            .arg(toDisplay(r->path), mib(r->fileBytes))
                            .arg(r->bitsPerWeight, 0, 'f', 4)
                            .arg(r->seconds, 0, 'f', 1);
    m_log->appendPlainText(msg);
    if (r->paths.size() > 1)
        for (const auto& part : r->paths)
            m_log->appendPlainText(tr("  part %1").arg(toDisplay(part)));
    for (const auto& n : r->notes)
        m_log->appendPlainText(tr("note: %1").arg(toDisplay(n)));
    m_eta->setText(tr("done"));
    m_summary->setText(msg);
    emit exportFinished(toQ(r->path));
}

void ExportPanel::startExport() {
    if (!m_model) return;
    const QString out = m_output->text().trimmed();
    if (out.isEmpty()) {
        m_log->appendPlainText(tr("Choose an output file first."));
        return;
    }
    m_log->clear();
    m_log->appendPlainText(
        tr("Exporting %1 as %2 to %3").arg(toDisplay(m_model->name), m_type->currentText(), toDisplay(out)));
    qz::GgufExportParams p = params();
    p.dryRun = false;
    if (const QString err = splitAndKvParams(p); !err.isEmpty()) {
        m_log->appendPlainText(err);
        return;
    }
    ModelPtr model = m_model;
    const bool started = m_runner->run<ExportResultPtr>(
        [this, model, p](const BackgroundJob::Context& ctx) -> qz::Result<ExportResultPtr> {
            auto onTensor = [this, &ctx](const qz::GgufTensorLog& t) {
                ctx.post([this, t] { logTensor(t); });
            };
            auto r = qz::exportGguf(*model, p, ctx.progress, onTensor);
            if (!r) return r.error();
            return std::make_shared<const qz::GgufExportResult>(std::move(*r));
        },
        [this](ExportResultPtr&& r) { showExported(r); });
    if (started) setRunning(true);
}

void ExportPanel::applyTargetPlan(const QString& fileType, const QMap<QString, QString>& types,
                                  const QString& imatrixPath) {
    m_filling = true;  // one plan for all the changes below
    if (m_type->findText(fileType) >= 0) m_type->setCurrentText(fileType);
    if (!m_outputEdited) m_output->setText(defaultOutputFor(QStringLiteral("target")));
    m_imatrix->setText(imatrixPath);
    m_pure->setChecked(false);
    m_outputType->setCurrentIndex(0);
    m_embdType->setCurrentIndex(0);
    m_edits = types;
    m_filling = false;
    schedulePlan();
}

void ExportPanel::setRunning(bool on) {
    m_run->setEnabled(!on);
    m_cancel->setEnabled(on);
    for (QWidget* w : std::initializer_list<QWidget*>{m_type, m_format, m_output, m_imatrix, m_pure, m_outputType, m_embdType,
                                                      m_splitMode, m_splitValue, m_kvOverrides})
        w->setEnabled(!on);
}

// gguf-split output and --override-kv (core/gguf/README.md A.8, A.9): a split mode with its value, and
// one KEY=TYPE:VALUE per line. Any change re-plans (the plan shows the number of files).
QWidget* ExportPanel::buildSplitAndKvFields() {
    auto* box = new QWidget(this);
    auto* col = new QVBoxLayout(box);
    col->setContentsMargins(0, 0, 0, 0);
    auto* row = new QHBoxLayout;
    m_splitMode = new QComboBox(box);
    m_splitMode->addItem(tr("one file"), QStringLiteral("none"));
    m_splitMode->addItem(tr("split: at most size"), QStringLiteral("size"));
    m_splitMode->addItem(tr("split: at most tensors"), QStringLiteral("tensors"));
    m_splitValue = new QLineEdit(box);
    m_splitValue->setPlaceholderText(tr("e.g. 2G or 500M (10^9 / 10^6 bytes), or a tensor count"));
    m_splitValue->setEnabled(false);
    row->addWidget(m_splitMode);
    row->addWidget(m_splitValue, 1);
    col->addLayout(row);
    m_kvOverrides = new QPlainTextEdit(box);
    m_kvOverrides->setPlaceholderText(tr("metadata overrides, one per line: KEY=int:8, KEY=float:0.5, KEY=bool:true, KEY=str:text"));
    m_kvOverrides->setMaximumHeight(fontMetrics().lineSpacing() * 4 + 12);
    m_kvOverrides->setTabChangesFocus(true);
    col->addWidget(m_kvOverrides);
    connect(m_splitMode, &QComboBox::currentIndexChanged, this, [this] {
        m_splitValue->setEnabled(m_splitMode->currentData().toString() != QLatin1String("none"));
        schedulePlan();
    });
    connect(m_splitValue, &QLineEdit::editingFinished, this, [this] { schedulePlan(); });
    connect(m_kvOverrides, &QPlainTextEdit::textChanged, this, [this] { schedulePlan(); });
    return box;
}

QString ExportPanel::splitAndKvParams(qz::GgufExportParams& p) const {
    p.kvOverrides.clear();
    p.splitMaxBytes = 0;
    p.splitMaxTensors = 0;
    const QStringList lines = m_kvOverrides->toPlainText().split(QLatin1Char('\n'));
    for (const QString& line : lines) {
        const QString spec = line.trimmed();
        if (spec.isEmpty()) continue;
        auto o = qz::parseGgufKvOverride(toStd(spec));
        if (!o) return toQ(o.error().message);
        p.kvOverrides.push_back(std::move(*o));
    }
    const QString mode = m_splitMode->currentData().toString();
    const QString value = m_splitValue->text().trimmed();
    if (mode == QLatin1String("size")) {
        auto n = qz::parseGgufSplitSize(toStd(value));
        if (!n) return toQ(n.error().message);
        p.splitMaxBytes = *n;
    } else if (mode == QLatin1String("tensors")) {
        bool ok = false;
        const int n = value.toInt(&ok);
        if (!ok || n < 1) return tr("the tensor count per split must be a whole number of at least 1, got '%1'").arg(value);
        p.splitMaxTensors = n;
    }
    return {};
}

}  // namespace qz::ui

#include "calibrated_export_page.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMetaObject>
#include <QPlainTextEdit>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTabWidget>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "app_options.h"
#include "histogram_plot.h"
#include "infer/hparams.h"
#include "jobs/layer_histograms.h"
#include "layer_bar_chart.h"
#include "stats/histogram.h"

namespace qz::ui {

namespace {
QString bundledText() { return sampleTextPath(); }

QTableWidgetItem* cell(const QString& text, bool right = false) {
    auto* it = new QTableWidgetItem(text);
    it->setFlags(it->flags() & ~Qt::ItemIsEditable);
    if (right) it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return it;
}

QTableWidgetItem* number(double v, int precision) {
    auto* it = cell(std::isfinite(v) ? QString::number(v, 'f', precision) : QStringLiteral("—"), true);
    it->setData(Qt::UserRole, v);
    return it;
}
}  // namespace

CalibratedExportPage::CalibratedExportPage(const QString& formatName, QWidget* parent)
    : QWidget(parent), m_formatName(formatName), m_job(new BackgroundJob(this)),
      m_evalJob(new BackgroundJob(this)), m_histJob(new BackgroundJob(this)) {

    // Options: the subclass adds its rows to m_options; the calibration and output rows follow.
    auto* optionsBox = new QGroupBox(tr("%1 options").arg(formatName), this);
    m_optionsBox = optionsBox;
    m_options = new QFormLayout;
    auto* calibBox = new QGroupBox(tr("Calibration and output"), this);
    auto* calibForm = new QFormLayout(calibBox);
    m_calib = new QComboBox(this);
    m_calib->addItem(tr("shakespeare-valid.txt (bundled)"), bundledText());
    m_calib->addItem(tr("Choose a file…"), QString());
    auto* calibRow = new QHBoxLayout;
    calibRow->addWidget(m_calib, 1);
    calibForm->addRow(tr("Text"), calibRow);
    m_samples = new QSpinBox(this);
    m_samples->setRange(1, 100000);
    m_samples->setValue(128);
    m_samples->setToolTip(tr("Number of calibration windows cut at seeded random positions of the text"));
    m_seqLen = new QSpinBox(this);
    m_seqLen->setRange(8, 1 << 20);
    m_seqLen->setValue(512);
    m_seqLen->setToolTip(tr("Tokens per calibration window (at most the model's context)"));
    auto* winRow = new QHBoxLayout;
    winRow->addWidget(m_samples);
    winRow->addWidget(new QLabel(tr("windows ×"), this));
    winRow->addWidget(m_seqLen);
    winRow->addWidget(new QLabel(tr("tokens"), this));
    winRow->addStretch(1);
    calibForm->addRow(tr("Samples"), winRow);
    m_output = new QLineEdit(this);
    auto* browse = new QPushButton(tr("…"), this);
    auto* outRow = new QHBoxLayout;
    outRow->addWidget(m_output, 1);
    outRow->addWidget(browse);
    calibForm->addRow(tr("Output folder"), outRow);
    m_memory = new QLabel(this);
    m_memory->setWordWrap(true);
    m_memory->setTextFormat(Qt::PlainText);
    calibForm->addRow(tr("Memory"), m_memory);
    connect(m_samples, &QSpinBox::valueChanged, this, &CalibratedExportPage::updateMemoryLabel);
    connect(m_seqLen, &QSpinBox::valueChanged, this, &CalibratedExportPage::updateMemoryLabel);
    m_resume = new QCheckBox(tr("Resume a partial run into this folder (its finished work is reused)"), this);
    m_resume->setChecked(true);
    calibForm->addRow(QString(), m_resume);
    auto* optLay = new QVBoxLayout(optionsBox);
    optLay->addLayout(m_options);
    auto* optionsRow = new QHBoxLayout;
    optionsRow->addWidget(optionsBox, 2);
    optionsRow->addWidget(calibBox, 3);

    m_run = new QPushButton(tr("Export"), this);
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setEnabled(false);
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_eta = new QLabel(this);
    m_eta->setMinimumWidth(260);
    auto* runRow = new QHBoxLayout;
    runRow->addWidget(m_run);
    runRow->addWidget(m_cancel);
    runRow->addWidget(m_progress, 1);
    runRow->addWidget(m_eta);
    m_summary = new QLabel(tr("Open a Hugging Face model folder to export it."), this);
    m_summary->setWordWrap(true);
    m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);

    m_chart = new LayerBarChart(this);

    // Bottom tabs: layers, before / after, evaluate, log.
    m_tabs = new QTabWidget(this);
    m_layers = new QTableWidget(0, 0, this);
    m_layers->verticalHeader()->hide();
    m_layers->setWordWrap(false);
    m_layers->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_layers->setSelectionMode(QAbstractItemView::SingleSelection);
    m_tabs->addTab(m_layers, tr("Layers"));

    auto* ba = new QWidget(this);
    auto* baLay = new QVBoxLayout(ba);
    m_layerBox = new QComboBox(ba);
    m_layerBox->setEnabled(false);
    m_layerBox->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    auto* pick = new QHBoxLayout;
    pick->addWidget(new QLabel(tr("Layer"), ba));
    pick->addWidget(m_layerBox, 1);
    m_histStats = new QLabel(tr("Histograms appear when the export has finished."), ba);
    pick->addWidget(m_histStats, 2);
    baLay->addLayout(pick);
    m_hist = new HistogramPlot(ba);
    m_hist->setAxisLabels(tr("weight value"), tr("count"));
    baLay->addWidget(m_hist, 1);
    m_tabs->addTab(ba, tr("Before / after"));

    auto* ev = new QWidget(this);
    auto* evLay = new QVBoxLayout(ev);
    m_evalText = new QComboBox(ev);
    m_evalText->addItem(tr("shakespeare-valid.txt (bundled)"), bundledText());
    m_evalCtx = new QSpinBox(ev);
    m_evalCtx->setRange(8, 1 << 20);
    m_evalCtx->setValue(512);
    m_evalChunks = new QSpinBox(ev);
    m_evalChunks->setRange(0, 1 << 20);
    m_evalChunks->setValue(10);
    m_evalChunks->setSpecialValueText(tr("all"));
    m_evaluate = new QPushButton(tr("Evaluate"), ev);
    m_evaluate->setToolTip(tr("Perplexity of the original and of the result through our engine (and the KL-divergence)"));
    m_evalCancel = new QPushButton(tr("Cancel"), ev);
    m_send = new QPushButton(tr("Send to Evaluate workspace"), ev);
    for (QPushButton* b : {m_evaluate, m_evalCancel, m_send}) b->setEnabled(false);
    auto* evRow = new QHBoxLayout;
    evRow->addWidget(new QLabel(tr("Text"), ev));
    evRow->addWidget(m_evalText);
    evRow->addWidget(new QLabel(tr("-c"), ev));
    evRow->addWidget(m_evalCtx);
    evRow->addWidget(new QLabel(tr("chunks"), ev));
    evRow->addWidget(m_evalChunks);
    evRow->addWidget(m_evaluate);
    evRow->addWidget(m_evalCancel);
    evRow->addStretch(1);
    evRow->addWidget(m_send);
    evLay->addLayout(evRow);
    m_evalTable = new QTableWidget(0, EvalColumnCount, ev);
    m_evalTable->setHorizontalHeaderLabels({tr("model"), tr("PPL"), tr("±"), tr("Δ PPL %"), tr("mean KLD")});
    m_evalTable->horizontalHeader()->setSectionResizeMode(EvalName, QHeaderView::Stretch);
    m_evalTable->verticalHeader()->hide();
    evLay->addWidget(m_evalTable, 1);
    m_evalStatus = new QLabel(ev);
    evLay->addWidget(m_evalStatus);
    m_tabs->addTab(ev, tr("Evaluate"));

    m_log = new QPlainTextEdit(this);
    m_log->setReadOnly(true);
    m_log->setLineWrapMode(QPlainTextEdit::NoWrap);
    m_log->setFont(QFont(QStringLiteral("monospace")));
    m_tabs->addTab(m_log, tr("Log"));

    auto* top = new QWidget(this);
    auto* topLay = new QVBoxLayout(top);
    topLay->setContentsMargins(0, 0, 0, 0);
    topLay->addLayout(optionsRow);
    topLay->addLayout(runRow);
    topLay->addWidget(m_summary);
    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(m_chart);
    split->addWidget(m_tabs);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    auto* lay = new QVBoxLayout(this);
    lay->setContentsMargins(0, 0, 0, 0);
    lay->addWidget(top);
    lay->addWidget(split, 1);

    connect(m_calib, &QComboBox::activated, this, [this](int i) {
        if (m_calib->itemData(i).toString().isEmpty()) chooseCalibrationFile();
    });
    connect(m_output, &QLineEdit::textEdited, this, [this] { m_outputEdited = true; });
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString d = QFileDialog::getSaveFileName(this, tr("Output folder (must not exist yet)"), m_output->text());
        if (!d.isEmpty()) {
            m_output->setText(d);
            m_outputEdited = true;
        }
    });
    connect(m_run, &QPushButton::clicked, this, [this] { start(); });
    connect(m_cancel, &QPushButton::clicked, this, [this] { cancel(); });
    connect(m_job, &BackgroundJob::progress, this, [this](double f, const QString& step, double eta) {
        m_progress->setValue(int(std::clamp(f, 0.0, 1.0) * 1000));
        m_eta->setText(eta < 0 ? step : tr("%1 — ETA %2 s").arg(step).arg(qRound(eta)));
    });
    connect(m_job, &BackgroundJob::finished, this, [this] {
        setRunning(false);
        m_progress->setValue(1000);
        m_eta->setText(tr("done in %1 s").arg(m_job->elapsedSeconds(), 0, 'f', 1));
        emit exportFinished(m_outputDir);
    });
    connect(m_job, &BackgroundJob::failed, this, [this](const QString& msg) {
        setRunning(false);
        m_progress->setValue(0);
        m_eta->setText(tr("failed"));
        m_summary->setText(tr("Export failed: %1").arg(msg));
        appendLog(tr("Export failed: %1").arg(msg));
        emit exportFailed(msg);
    });
    connect(m_job, &BackgroundJob::cancelled, this, [this] {
        setRunning(false);
        m_progress->setValue(0);
        m_eta->setText(tr("cancelled"));
        m_cancelledDir = m_outputDir;
        // Not "no folder was created": the core may be past its last cancel point (finishedAfterCancel).
        m_summary->setText(
            tr("Cancelled. Export again into the same folder to resume from the finished work."));
        appendLog(tr("Export cancelled."));
        emit exportCancelled();
    });
    connect(m_job, &BackgroundJob::finishedAfterCancel, this, [this] {
        const QString text = tr("The cancelled export had already got past its last cancel point and "
                                "finished: %1 was written.")
                                 .arg(m_cancelledDir);
        appendLog(text);
        if (!isRunning()) m_summary->setText(text);
    });
    connect(m_layerBox, &QComboBox::currentIndexChanged, this, [this](int i) {
        if (i >= 0) showLayer(m_layerBox->itemData(i).toString());
    });
    connect(m_layers, &QTableWidget::itemSelectionChanged, this, [this] {
        const auto rows = m_layers->selectionModel()->selectedRows();
        if (rows.isEmpty() || !hasResult()) return;
        const QString name = m_layers->item(rows.first().row(), 0)->data(Qt::UserRole).toString();
        const int i = m_layerBox->findData(name);
        if (i >= 0) m_layerBox->setCurrentIndex(i);
    });
    connect(m_evaluate, &QPushButton::clicked, this, [this] { evaluate(); });
    connect(m_evalCancel, &QPushButton::clicked, this, [this] { m_evalJob->cancel(); });
    connect(m_send, &QPushButton::clicked, this, [this] {
        if (!hasResult() || !m_model) return;
        if (m_folder)
            emit evalVariantReady(runnableEvalVariant(resultName(), m_model, m_folder, m_bytes, m_bpw));
        else
            emit variantReady(resultName(), m_model, m_overrides, m_bytes, m_bpw);
        if (m_extra) emit variantReady(m_extraName, m_model, m_extra, 0, 0);
        m_evalStatus->setText(tr("Added to the Evaluate workspace."));
    });
    connect(m_evalJob, &BackgroundJob::progress, this, [this](double f, const QString& step) {
        m_evalStatus->setText(tr("%1 % — %2").arg(qRound(f * 100)).arg(step));
    });
    auto evalDone = [this](const QString& text) {
        m_evalStatus->setText(text);
        m_evaluate->setEnabled(hasResult() && !isRunning());
        m_evalCancel->setEnabled(false);
    };
    connect(m_evalJob, &BackgroundJob::finished, this, [this, evalDone] {
        evalDone(tr("done"));
        emit evaluationFinished();
    });
    connect(m_evalJob, &BackgroundJob::failed, this, [evalDone](const QString& m) { evalDone(m); });
    connect(m_evalJob, &BackgroundJob::cancelled, this, [this, evalDone] { evalDone(tr("cancelled")); });
    connect(m_histJob, &BackgroundJob::failed, this, [this](const QString& msg) {
        m_hist->clear(msg);
        m_histStats->setText(msg);
    });
    setEnabled(false);
}

CalibratedExportPage::~CalibratedExportPage() {
    // The workers hold the model and post to this page: stop them before the members go.
    m_job->cancel();
    m_job->waitForIdle();
    m_evalJob->cancel();
    m_evalJob->waitForIdle();
    m_histJob->cancel();
    m_histJob->waitForIdle();
}

bool CalibratedExportPage::isRunning() const { return m_job->isRunning(); }

void CalibratedExportPage::setModel(ModelPtr model) {
    if (m_job->isRunning()) cancel();
    m_evalJob->cancel();
    m_histJob->cancel();  // histograms still being computed belong to the previous model's result
    m_model = std::move(model);
    m_overrides.reset();
    m_folder.reset();
    m_extra.reset();
    m_outputEdited = false;
    m_layers->setRowCount(0);
    m_layerBox->clear();
    m_layerBox->setEnabled(false);
    m_hist->clear();
    m_evalTable->setRowCount(0);
    m_log->clear();
    m_progress->setValue(0);
    m_eta->clear();
    for (QPushButton* b : {m_evaluate, m_evalCancel, m_send}) b->setEnabled(false);
    setEnabled(m_model != nullptr);
    if (!m_model) return;
    if (m_model->format != qz::ModelFormat::HuggingFaceFolder)
        m_summary->setText(
            tr("%1 export needs a Hugging Face model folder (config.json + safetensors); this is %2.")
                .arg(m_formatName, toDisplay(m_model->path)));
    else
        m_summary->setText(tr("Ready to export %1 as %2.").arg(toDisplay(m_model->name), m_formatName));
    if (auto hp = qz::readInferHParams(*m_model); hp && hp->nCtxTrain > 0) {
        m_seqLen->setMaximum(hp->nCtxTrain);
        m_evalCtx->setMaximum(hp->nCtxTrain);
        m_seqLen->setValue(std::min(m_seqLen->value(), hp->nCtxTrain));
        m_evalCtx->setValue(std::min(m_evalCtx->value(), hp->nCtxTrain));
    }
    if (m_keepBox) m_keepBox->setChecked(m_model->totalParameters() <= m_keepMaxParams);
    updateKeepLabel();
    updateMemoryLabel();
    modelChanged();
    updateDefaultOutput();
}

void CalibratedExportPage::registerKeepCheck(QCheckBox* box, std::function<int()> copies) {
    m_keepBox = box;
    m_keepCopies = std::move(copies);
    connect(box, &QCheckBox::toggled, this, &CalibratedExportPage::updateMemoryLabel);
    updateKeepLabel();
}

qz::CalibMemorySettings CalibratedExportPage::memorySettings() const {
    qz::CalibMemorySettings s;
    s.windows = m_samples->value();
    s.seqLen = m_seqLen->value();
    return s;
}

qz::MemoryEstimate CalibratedExportPage::memoryEstimate() const {
    qz::MemoryEstimate e;
    if (!m_model) return e;
    auto hp = qz::readInferHParams(*m_model);
    if (!hp) return e;
    e = qz::estimateCalibratedExport(*hp, m_model->totalBytes(), memorySettings());
    if (m_keepBox && m_keepBox->isChecked()) {
        const int copies = m_keepCopies ? std::max(1, m_keepCopies()) : 1;
        e.parts.push_back({"dequantized weights kept", 4ull * uint64_t(copies) * m_model->totalParameters()});
    }
    return e;
}

void CalibratedExportPage::updateMemoryLabel() {
    if (!m_memory) return;
    if (!m_model || !qz::readInferHParams(*m_model)) {
        m_memory->clear();
        return;
    }
    const uint64_t available = m_availableOverride ? m_availableOverride : qz::availableMemoryBytes();
    m_memory->setText(tr("about %1; %2 GB available")
                          .arg(toQ(memoryEstimate().describe()))
                          .arg(double(available) * 1e-9, 0, 'f', 1));
}

void CalibratedExportPage::updateKeepLabel() {
    if (!m_keepBox) return;
    const int copies = m_keepCopies ? std::max(1, m_keepCopies()) : 1;
    QString size;
    if (m_model) {
        const double gib = 4.0 * copies * double(m_model->totalParameters()) / double(1ull << 30);
        size = gib >= 1.0 ? tr(" ≈ %1 GiB for this model").arg(gib, 0, 'f', 1)
                          : tr(" ≈ %1 MiB for this model").arg(gib * 1024.0, 0, 'f', 0);
    }
    m_keepBox->setText(tr("keep the dequantized weights in memory (quicker histograms and evaluation; without "
                          "it they are read from the written folder): 4 bytes per weight%1%2; "
                          "off by default above %3 M parameters")
                           .arg(copies > 1 ? tr(" × %1 variants").arg(copies) : QString(), size)
                           .arg(m_keepMaxParams / 1000000));
}

bool CalibratedExportPage::checkTextFile(const QString& path, qint64 maxBytes, QString* error) {
    const QFileInfo fi(path);
    QFile f(path);
    if (!fi.exists()) {
        *error = tr("%1 does not exist").arg(path);
        return false;
    }
    if (!fi.isFile() || !f.open(QIODevice::ReadOnly)) {
        *error = tr("%1 cannot be read (not a readable file)").arg(path);
        return false;
    }
    const qint64 size = f.size();
    if (size <= 0) {
        *error = tr("%1 is empty").arg(path);
        return false;
    }
    if (size > maxBytes) {
        *error = tr("%1 is %2 MiB; at most %3 MiB are accepted here (use a shorter excerpt)")
                     .arg(path)
                     .arg(double(size) / 1048576.0, 0, 'f', 1)
                     .arg(maxBytes >> 20);
        return false;
    }
    const QByteArray head = f.read(64 << 10);
    if (head.contains('\0')) {
        *error = tr("%1 is not a text file (it contains NUL bytes)").arg(path);
        return false;
    }
    return true;
}

void CalibratedExportPage::updateDefaultOutput() {
    if (!m_model || m_outputEdited) return;
    QString base = toQ(m_model->path);
    while (base.size() > 1 && base.endsWith(QLatin1Char('/'))) base.chop(1);
    const QFileInfo fi(base);
    m_output->setText(fi.dir().filePath(defaultOutputName()));
}

void CalibratedExportPage::setCalibrationPath(const QString& path) {
    int i = m_calib->findData(path);
    if (i < 0) {
        i = m_calib->count() - 1;  // before "Choose a file…"
        m_calib->insertItem(i, QFileInfo(path).fileName(), path);
        m_calib->setItemData(i, path, Qt::ToolTipRole);
    }
    m_calib->setCurrentIndex(i);
}

QString CalibratedExportPage::calibrationPath() const { return m_calib->currentData().toString(); }

void CalibratedExportPage::chooseCalibrationFile() {
    const QString f = QFileDialog::getOpenFileName(this, tr("Calibration text"), QString(),
                                                   tr("Text (*.txt);;All files (*)"));
    if (f.isEmpty())
        m_calib->setCurrentIndex(0);
    else
        setCalibrationPath(f);
}

bool CalibratedExportPage::start() {
    if (!m_model || m_job->isRunning()) return false;
    QString out = m_output->text().trimmed();
    while (out.size() > 1 && out.endsWith(QLatin1Char('/'))) out.chop(1);
    if (out.isEmpty()) {
        appendLog(tr("Choose an output folder first."));
        return false;
    }
    const QString calib = calibrationPath();
    if (calib.isEmpty()) {
        appendLog(tr("Choose a calibration text first."));
        return false;
    }
    QString error;
    const uint64_t available = m_availableOverride ? m_availableOverride : qz::availableMemoryBytes();
    if (auto fits = qz::checkMemoryFits(memoryEstimate(), available); !fits) {
        const QString why = tr("Not enough memory: %1. Use fewer or shorter calibration windows%2.")
                                .arg(toQ(fits.error().message),
                                     m_keepBox && m_keepBox->isChecked()
                                         ? tr(", or do not keep the dequantized weights")
                                         : QString());
        m_summary->setText(why);
        appendLog(why);
        return false;
    }
    BackgroundJob::Work work;
    if (checkTextFile(calib, kMaxCalibrationBytes, &error)) work = makeWork(out, calib, &error);
    if (!work) {
        m_summary->setText(tr("Cannot export: %1").arg(error));
        appendLog(tr("Cannot export: %1").arg(error));
        return false;
    }
    m_evalJob->cancel();
    m_histJob->cancel();  // a histogram of the previous result must not land on the cleared plot
    m_outputDir = out;
    m_overrides.reset();
    m_folder.reset();
    m_extra.reset();
    m_resumed = m_reported = 0;
    m_layers->setRowCount(0);
    m_layerBox->clear();
    m_layerBox->setEnabled(false);
    m_hist->clear(tr("Histograms appear when the export has finished."));
    m_histStats->clear();
    m_evalTable->setRowCount(0);
    m_log->clear();
    prepareRun();
    appendLog(tr("Exporting %1 as %2 to %3 (calibration: %4, %5 × %6 tokens)")
                  .arg(toDisplay(m_model->name), resultName(), toDisplay(out), toDisplay(calib))
                  .arg(m_samples->value())
                  .arg(m_seqLen->value()));
    m_summary->setText(tr("Running…"));
    if (!m_job->start(std::move(work))) return false;
    setRunning(true);
    return true;
}

void CalibratedExportPage::cancel() { m_job->cancel(); }

void CalibratedExportPage::setRunning(bool on) {
    m_run->setEnabled(!on);
    m_cancel->setEnabled(on);
    for (QWidget* w : std::initializer_list<QWidget*>{m_output, m_calib, m_samples, m_seqLen, m_resume})
        w->setEnabled(!on);
    m_optionsBox->setEnabled(!on);
    m_evaluate->setEnabled(!on && hasResult() && !m_evalJob->isRunning());
    m_send->setEnabled(!on && hasResult());
    if (on) {
        m_progress->setValue(0);
        m_eta->setText(tr("starting…"));
    }
    emit runningChanged(on);
}

void CalibratedExportPage::appendLog(const QString& line) { m_log->appendPlainText(line); }

void CalibratedExportPage::setLayerColumns(const QStringList& headers) {
    m_layers->setRowCount(0);
    m_layers->setColumnCount(headers.size());
    m_layers->setHorizontalHeaderLabels(headers);
    m_layers->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
}

void CalibratedExportPage::addLayerRow(const QStringList& cells, bool resumed) {
    const int r = m_layers->rowCount();
    m_layers->insertRow(r);
    for (int c = 0; c < cells.size() && c < m_layers->columnCount(); ++c) {
        // The layer's name (first cell) is shown escaped and kept raw for lookups.
        auto* it = cell(c == 0 ? toDisplay(cells[c]) : cells[c], c > 0);
        if (c == 0) it->setData(Qt::UserRole, cells[c]);
        if (resumed) it->setForeground(QColor(110, 110, 110));
        m_layers->setItem(r, c, it);
    }
    m_layers->scrollToBottom();
}

void CalibratedExportPage::noteLayer(const QString& weightName, bool resumed) {
    ++m_reported;
    if (resumed) {
        ++m_resumed;
        m_summary->setText(tr("Resumed %n layer(s) from the partial run in this folder.", nullptr, m_resumed));
    }
    emit layerReported(weightName);
}

void CalibratedExportPage::setResult(const QString& outputDir, OverridesPtr overrides, const QString& extraName,
                                     OverridesPtr extra, const QString& summary, quint64 bytes, double bitsPerWeight) {
    m_outputDir = outputDir;
    m_overrides = std::move(overrides);
    m_extra = std::move(extra);
    m_extraName = extraName;
    m_bytes = bytes;
    m_bpw = bitsPerWeight;
    QString text = summary;
    if (m_resumed > 0) text += QLatin1Char('\n') + tr("Resumed %n layer(s) from the partial run.", nullptr, m_resumed);
    m_summary->setText(text);
    appendLog(text);
    m_layerBox->blockSignals(true);
    m_layerBox->clear();
    const std::optional<qz::VariantKind> kind = folderKind();
    if (!m_overrides && kind && m_model && !outputDir.isEmpty()) {
        // Not kept: the written folder is the result, read tensor by tensor from its codes (histograms)
        // and row by row while the engine multiplies (evaluation).
        auto v = std::make_shared<qz::Variant>();
        v->name = v->label = toStd(resultName());
        v->kind = *kind;
        v->path = toStd(outputDir);
        v->bytes = bytes;
        v->bitsPerWeight = bitsPerWeight;
        v->parameters = m_model->totalParameters();
        for (const QString& n : m_chart->layers())
            if (const qz::TensorInfo* t = m_model->find(toStd(n)); t && t->shape.size() == 2) {
                qz::VariantTensor vt;
                vt.name = t->name;
                vt.numel = t->numel();
                v->tensors.push_back(std::move(vt));
            }
        if (!v->tensors.empty()) m_folder = std::move(v);
    }
    // The layers in chart order (the weight tensors of the result; biases are left out).
    QStringList names;
    if (m_overrides) {
        for (const QString& n : m_chart->layers())
            if (m_overrides->count(toStd(n))) names << n;
        for (const auto& [n, v] : *m_overrides) {
            const QString q = toQ(n);
            const qz::TensorInfo* t = m_model ? m_model->find(n) : nullptr;
            if (!names.contains(q) && t && t->shape.size() == 2) names << q;
        }
    } else if (m_folder) {
        for (const auto& t : m_folder->tensors) names << toQ(t.name);
    }
    for (const QString& n : names)
        m_layerBox->addItem(toDisplay(n), n);
    m_layerBox->blockSignals(false);
    m_layerBox->setEnabled(m_layerBox->count() > 0);
    if (hasResult())
        m_hist->clear(tr("Choose a layer."));
    else
        m_hist->clear(tr("The dequantized weights were not kept (see the options)."));
    if (m_layerBox->count() > 0) showLayer(m_layerBox->currentData().toString());
}

void CalibratedExportPage::showLayer(const QString& weightName) {
    if (!m_model || !hasResult()) return;
    const std::vector<float>* deq = nullptr;
    if (m_overrides) {
        auto it = m_overrides->find(toStd(weightName));
        if (it == m_overrides->end()) return;
        deq = &it->second;
    } else if (!m_folder->find(toStd(weightName))) {
        return;
    }
    if (m_layerBox->currentData().toString() != weightName) {
        const int i = m_layerBox->findData(weightName);
        if (i >= 0) {
            m_layerBox->blockSignals(true);
            m_layerBox->setCurrentIndex(i);
            m_layerBox->blockSignals(false);
        }
    }
    m_hist->clear(tr("Computing %1…").arg(toDisplay(weightName)));
    m_histJob->cancel();  // superseded
    ModelPtr model = m_model;
    OverridesPtr ov = m_overrides;  // keeps the values alive on the worker
    std::shared_ptr<const qz::Variant> folder = m_folder;
    m_histJob->run<qz::LayerHistograms>(
        [model, ov, deq, folder,
         name = toStd(weightName)](const BackgroundJob::Context& ctx) -> qz::Result<qz::LayerHistograms> {
            if (ctx.cancelled()) return qz::cancelledError();
            if (deq) return qz::computeLayerHistograms(*model, name, *deq, 150);
            // From the written folder: this one tensor decoded from its codes.
            auto pair = qz::variantTensorPair(*model, *folder, name);
            if (!pair) return pair.error();
            if (ctx.cancelled()) return qz::cancelledError();
            return qz::computeLayerHistograms(*model, name, pair->variant, 150);
        },
        [this, weightName](qz::LayerHistograms&& h) {
            m_hist->setTitle(toDisplay(weightName));
            m_hist->setSeries({{tr("original"), h.original, HistogramPlot::originalColor()},
                               {resultName(), h.result, HistogramPlot::quantizedColor()}});
            m_histStats->setText(tr("MSE %1 · max |err| %2 · SQNR %3 dB · cosine %4")
                                     .arg(h.stats.mse, 0, 'g', 4)
                                     .arg(h.stats.maxAbs, 0, 'g', 4)
                                     .arg(h.stats.sqnrDb, 0, 'f', 2)
                                     .arg(h.stats.cosine, 0, 'f', 6));
            emit layerShown(weightName);
        });
}

bool CalibratedExportPage::evaluate() {
    if (!m_model || !hasResult() || m_job->isRunning() || m_evalJob->isRunning()) return false;
    const QString path = m_evalText->currentData().toString();
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly) || f.size() > (qint64(64) << 20)) {
        m_evalStatus->setText(tr("cannot read %1").arg(path));
        return false;
    }
    const QByteArray bytes = f.readAll();
    qz::EvalParams p;
    p.nCtx = m_evalCtx->value();
    p.nChunks = m_evalChunks->value() > 0 ? m_evalChunks->value() : -1;
    EvalVariant original;
    original.name = tr("original");
    original.model = m_model;
    std::vector<EvalVariant> variants;
    if (m_folder) {
        variants.push_back(runnableEvalVariant(resultName(), m_model, m_folder, m_bytes, m_bpw));
    } else {
        EvalVariant result;
        result.name = resultName();
        result.model = m_model;
        result.overrides = m_overrides;
        variants.push_back(result);
    }
    if (m_extra) {
        EvalVariant extra;
        extra.name = m_extraName;
        extra.model = m_model;
        extra.overrides = m_extra;
        variants.push_back(extra);
    }
    m_evalTable->setRowCount(int(variants.size()) + 1);
    m_evalTable->setItem(0, EvalName, cell(original.name));
    for (size_t i = 0; i < variants.size(); ++i) m_evalTable->setItem(int(i) + 1, EvalName, cell(variants[i].name));
    for (int r = 0; r < m_evalTable->rowCount(); ++r)
        for (int c = EvalPpl; c < EvalColumnCount; ++c) m_evalTable->setItem(r, c, cell(QString()));
    auto onRow = [this](const EvalRow& row) { onEvalRow(row); };
    std::string text(bytes.constData(), size_t(bytes.size()));
    if (!m_evalJob->start(evaluateWork(original, variants, std::move(text), p, onRow)))
        return false;
    m_evaluate->setEnabled(false);
    m_evalCancel->setEnabled(true);
    m_evalStatus->setText(tr("evaluating…"));
    return true;
}

void CalibratedExportPage::onEvalRow(const EvalRow& r) {
    if (r.index < 0 || r.index >= m_evalTable->rowCount()) return;
    if (!r.ok) {
        m_evalTable->setItem(r.index, EvalPpl, cell(r.error));
        return;
    }
    m_evalTable->setItem(r.index, EvalPpl, number(r.ppl, 4));
    m_evalTable->setItem(r.index, EvalPplError, number(r.pplError, 4));
    if (r.index > 0) {
        const double base = m_evalTable->item(0, EvalPpl)->data(Qt::UserRole).toDouble();
        m_evalTable->setItem(r.index, EvalDelta, number(base > 0 ? 100.0 * r.deltaPpl / base : std::nan(""), 3));
        m_evalTable->setItem(r.index, EvalKld, number(r.meanKld, 6));
    }
}

}  // namespace qz::ui

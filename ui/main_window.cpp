#include "main_window.h"

#include <QCloseEvent>
#include <QCoreApplication>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QGuiApplication>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QScreen>
#include <QScrollArea>
#include <QSettings>
#include <QSplitter>
#include <QStatusBar>
#include <algorithm>

#include "about_dialog.h"
#include "background_job.h"
#include "codes_view.h"
#include "compare_workspace.h"
#include "evaluate_panel.h"
#include "exl2_export_page.h"
#include "export_panel.h"
#include "headless.h"
#include "histograms_tab.h"
#include "log_dock.h"
#include "method_panel.h"
#include "model_histogram_job.h"
#include "model_loader.h"
#include "model_summary.h"
#include "model_tree.h"
#include "recent_files.h"
#include "report_writer.h"
#include "result_summary.h"
#include "teaching_view.h"
#include "tensor_analyzer.h"
#include "tensor_table.h"
#include "tensor_table_model.h"
#include "workspace_tabs.h"

namespace qz::ui {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    qzInitUiResources();
    setWindowTitle(tr("QuantZoo"));
    setWindowIcon(QIcon(QStringLiteral(":/icons/quantzoo.svg")));
    setAcceptDrops(true);
    m_loader = new ModelLoader(this);
    m_runner = new BackgroundJob(this);
    m_modelHistogram = new ModelHistogramJob(this);
    m_analyzer = new TensorAnalyzer(this);

    m_tree = new ModelTree(this);
    m_summary = new ModelSummary(this);
    auto* left = new QSplitter(Qt::Vertical, this);
    left->addWidget(m_tree);
    left->addWidget(m_summary);
    left->setStretchFactor(0, 3);
    left->setStretchFactor(1, 1);
    left->setMinimumWidth(260);

    m_tabs = new WorkspaceTabs(this);
    m_histograms = new HistogramsTab(this);
    m_table = new TensorTable(this);
    m_tabs->addWorkspace(QStringLiteral("histograms"), tr("Histograms"), m_histograms);
    m_tabs->addWorkspace(QStringLiteral("tensors"), tr("Tensors table"), m_table);
    m_codes = new CodesView(this);  // the raw codes of the focused tensor, as the notebook prints them
    m_tabs->addWorkspace(QStringLiteral("codes"), tr("Codes"), m_codes);
    m_evaluate = new EvaluatePanel(this);
    m_tabs->addWorkspace(QStringLiteral("evaluate"), tr("Evaluate"), m_evaluate);
    m_export = new ExportPanel(this);
    m_tabs->addWorkspace(QStringLiteral("export"), tr("Export"), m_export);
    m_teach = new TeachingView(this);  // the selected tensor under the quantizers, step by step
    m_tabs->addWorkspace(QStringLiteral("teaching"), tr("Teaching"), m_teach);
    connect(m_export->exl2Page(), &CalibratedExportPage::exportFinished, m_teach,
            [this] { m_teach->setExl2Result(m_export->exl2Page()->result()); });
    // A finished export becomes a variant to measure next to the original (PPL, KLD, generation).
    connect(m_export, &ExportPanel::exportFinished, m_evaluate, [this](const QString& path) {
        QString error;
        if (!m_evaluate->addGgufFile(path, &error)) m_log->appendError(tr("Evaluate: %1").arg(error));
    });
    // A GPTQ / EXL2 result (the original with dequantized weights) too.
    connect(m_export, &ExportPanel::variantReady, m_evaluate,
            [this](const QString& name, ModelPtr model, OverridesPtr overrides, quint64 bytes, double bpw) {
                m_evaluate->addVariant(name, model, overrides, bytes, bpw);
            });
    connect(m_export, &ExportPanel::evalVariantReady, m_evaluate,
            [this](const EvalVariant& v) { m_evaluate->addEvalVariant(v); });

    // Every result kept as a variant, side by side (each run, each GGUF export).
    m_compare = new CompareWorkspace(this);
    m_tabs->addWorkspace(QStringLiteral("compare"), tr("Compare"), m_compare);
    connect(m_export, &ExportPanel::exportFinished, m_compare, [this](const QString& path) { m_compare->addFile(path); });
    connect(m_export, &ExportPanel::folderExported, m_compare, [this](const QString& format, const QString& dir) {
        if (format == QLatin1String("gptq") || format == QLatin1String("exl2")) m_compare->addFile(dir);
    });
    connect(m_compare, &CompareWorkspace::modelRequested, this, &MainWindow::openPath);

    m_panel = new MethodPanel(this);
    auto* right = new QScrollArea(this);
    right->setWidget(m_panel);
    right->setWidgetResizable(true);
    right->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    right->setMinimumWidth(m_panel->sizeHint().width() + 24);

    auto* centre = new QSplitter(Qt::Horizontal, this);
    centre->addWidget(left);
    centre->addWidget(m_tabs);
    centre->addWidget(right);
    centre->setStretchFactor(0, 2);
    centre->setStretchFactor(1, 5);
    centre->setStretchFactor(2, 1);
    centre->setSizes({350, 860, 300});  // the workspace gets the room: its Histograms page needs ~800 px
    setCentralWidget(centre);

    m_log = new LogDock(this);
    addDockWidget(Qt::BottomDockWidgetArea, m_log);
    resizeDocks({m_log}, {110}, Qt::Vertical);
    m_statusLabel = new QLabel(this);
    statusBar()->addWidget(m_statusLabel, 1);

    buildMenus();
    wireJobs();
    // The first size fits the screen; afterwards the last one is restored, corrected if it no longer fits
    // (another screen, a lower resolution).
    resize(1500, 900);
    restoreGeometry(QSettings().value(QStringLiteral("window/geometry")).toByteArray());
    fitToScreen();
    setStatus(tr("Ready — open a model (File › Open or drag and drop)."));
}

MainWindow::~MainWindow() {
    m_runner->cancel();  // the workers hold the model; let them stop before the panels go
}

void MainWindow::fitToScreen() {
    const QScreen* s = screen() ? screen() : QGuiApplication::primaryScreen();
    if (!s) return;
    if (isMaximized() || isFullScreen()) return;  // the window system sizes those
    const QRect avail = s->availableGeometry();
    // Before the first show the window system's frame is unknown: leave room for a title bar and borders.
    const QRect inner = geometry(), outerNow = frameGeometry();
    QMargins frame(inner.left() - outerNow.left(), inner.top() - outerNow.top(),
                   outerNow.right() - inner.right(), outerNow.bottom() - inner.bottom());
    if (frame.isNull()) frame = QMargins(4, 32, 4, 4);
    const QSize room = avail.size().shrunkBy(frame).expandedTo(minimumSizeHint());
    if (width() > room.width() || height() > room.height()) resize(size().boundedTo(room));
    QRect outer = geometry().marginsAdded(frame);
    if (!avail.contains(outer)) {  // off screen or across its edge: move it inside
        const int maxLeft = std::max(avail.left(), avail.right() - outer.width() + 1);
        const int maxTop = std::max(avail.top(), avail.bottom() - outer.height() + 1);
        outer.moveLeft(std::clamp(outer.left(), avail.left(), maxLeft));
        outer.moveTop(std::clamp(outer.top(), avail.top(), maxTop));
        move(outer.topLeft());
    }
}

void MainWindow::buildMenus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    file->addAction(QIcon(QStringLiteral(":/icons/open.svg")), tr("&Open file…"), QKeySequence::Open, this, [this] {
        const QString p = QFileDialog::getOpenFileName(this, tr("Open model file"), QString(),
                                                       tr("Models (*.safetensors *.gguf);;All files (*)"));
        if (!p.isEmpty()) openPath(p);
    });
    file->addAction(QIcon(QStringLiteral(":/icons/folder.svg")), tr("Open &folder…"), this, [this] {
        const QString p = QFileDialog::getExistingDirectory(this, tr("Open Hugging Face model folder"));
        if (!p.isEmpty()) openPath(p);
    });
    m_recent = new RecentFiles(file->addMenu(tr("&Recent files")), this);
    connect(m_recent, &RecentFiles::openRequested, this, &MainWindow::openPath);
    file->addSeparator();
    m_exportAction = file->addAction(QIcon(QStringLiteral(":/icons/export.svg")), tr("&Export report…"), this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Export report into folder"));
        QString error;
        if (!dir.isEmpty() && !exportReport(dir, &error)) showError(tr("Export failed"), error);
    });
    m_exportAction->setEnabled(false);
    file->addSeparator();
    file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);
    QMenu* view = menuBar()->addMenu(tr("&View"));
    view->addAction(m_log->toggleViewAction());
    QMenu* help = menuBar()->addMenu(tr("&Help"));
    m_aboutAction = help->addAction(tr("&About QuantZoo"), this, [this] {
        auto* about = new AboutDialog(this);
        about->setAttribute(Qt::WA_DeleteOnClose);
        about->open();  // non-blocking: no nested event loop
    });
}

void MainWindow::wireJobs() {
    connect(m_loader, &ModelLoader::started, this,
            [this](const QString& p) { setStatus(tr("Opening %1…").arg(toDisplay(p))); });
    connect(m_loader, &ModelLoader::loaded, this, &MainWindow::onModelLoaded);
    connect(m_loader, &ModelLoader::failed, this, [this](const QString& path, const QString& message) {
        showError(tr("Cannot open model"), message.isEmpty() ? tr("%1: unknown error").arg(path) : message);
        emit modelFailed(m_lastError);
    });

    connect(m_panel, &MethodPanel::runRequested, this, &MainWindow::startRun);
    // Direct call on the UI thread: sets the job's atomic cancel flag immediately.
    connect(m_panel, &MethodPanel::cancelRequested, this, &MainWindow::cancelRun);
    connect(m_runner, &BackgroundJob::progress, m_panel, &MethodPanel::setProgress);
    connect(m_runner, &BackgroundJob::cancelled, this, &MainWindow::onRunCancelled);
    connect(m_runner, &BackgroundJob::failed, this, [this](const QString& message) {
        m_panel->setRunning(false);
        m_table->model()->clear();
        m_table->summary()->showFailed(message);
        m_histograms->clearModel(tr("Run failed"));
        showError(tr("Quantization failed"), message);
    });

    connect(m_tree, &ModelTree::currentTensorChanged, this, &MainWindow::focusTensor);
    m_codes->setSpec(m_panel->spec());
    connect(m_panel, &MethodPanel::choicesChanged, m_codes, [this] { m_codes->setSpec(m_panel->spec()); });
    connect(m_tree, &ModelTree::tensorSelectionChanged, m_panel, &MethodPanel::setTreeSelectionCount);
    connect(m_table, &TensorTable::tensorActivated, this, &MainWindow::focusTensor);
    connect(m_histograms, &HistogramsTab::tensorBinsChanged, this, [this] {
        const QString f = m_focus;
        const bool byDefault = m_focusIsDefault;
        m_focus.clear();
        if (!f.isEmpty()) focusTensor(f);
        m_focusIsDefault = byDefault;
    });
    connect(m_histograms, &HistogramsTab::modelHistogramRequested, this, [this](const qz::HistogramSpec& spec) {
        if (m_result && !m_runner->isRunning()) startRun();  // re-run the job with the new histogram spec
        else if (!m_result && !m_runner->isRunning()) m_modelHistogram->start(m_model, spec);  // originals only
    });
    // Before any run the model plot shows the original weights, counted on a worker after opening.
    connect(m_modelHistogram, &ModelHistogramJob::progress, this, [this](double f) {
        if (!m_result && !m_runner->isRunning())
            m_histograms->clearModel(tr("Whole model: counting the weights… %1 %").arg(qRound(100 * f)));
    });
    connect(m_modelHistogram, &ModelHistogramJob::ready, this,
            [this](const qz::Histogram& h, quint64 tensors, double seconds) {
                if (m_result || m_runner->isRunning()) return;
                m_histograms->showModelOriginal(h, tr("original, %n tensor(s)", nullptr, int(tensors)));
                m_log->append(tr("Whole-model histogram: %1 tensors in %2 s").arg(tensors).arg(seconds, 0, 'f', 2));
            });
    connect(m_modelHistogram, &ModelHistogramJob::failed, this, [this](const QString& message) {
        if (!m_result && !m_runner->isRunning()) m_histograms->clearModel(tr("Whole model: %1").arg(message));
    });
    connect(m_analyzer, &TensorAnalyzer::ready, this, [this](const qz::TensorQuantResult& r) {
        // A job started since: it delivers the focused tensor with its own choices.
        if (toQ(r.name) != m_focus || m_runner->isRunning()) return;
        // Without a finished run this is a preview of the panel's current choices.
        m_histograms->showTensor(r, toQ(m_previewSpec.describe()) + (m_result ? QString() : tr(" (preview)")),
                                 &m_previewSpec);
        emit tensorShown(m_focus);
    });
    // A large matrix: a preview from some of its rows first, replaced by the full analysis when it comes.
    connect(m_analyzer, &TensorAnalyzer::previewReady, this, [this](const qz::TensorQuantResult& r) {
        if (toQ(r.name) != m_focus || m_runner->isRunning()) return;
        const qint64 rows = r.shape.empty() ? 0 : qint64(r.shape.front());
        m_histograms->showTensor(
            r,
            toQ(m_previewSpec.describe()) +
                tr(" (preview from %1 of %2 rows; the whole tensor follows)").arg(r.sampledRows).arg(rows),
            &m_previewSpec);
        emit tensorPreviewShown(m_focus);
    });
    connect(m_analyzer, &TensorAnalyzer::failed, this, [this](const QString& message) {
        m_histograms->clearTensor(tr("Cannot analyse this tensor"));
        m_log->appendError(message);
    });
}

void MainWindow::openPath(const QString& path) {
    if (m_runner->isRunning()) cancelRun();
    m_log->append(tr("Opening %1").arg(toDisplay(path)));
    m_loader->open(path);
}

void MainWindow::onModelLoaded(ModelPtr model) {
    m_model = std::move(model);
    m_result.reset();
    m_focus.clear();
    m_exportAction->setEnabled(false);
    m_tree->setModel(m_model);
    m_summary->setModel(m_model);
    m_evaluate->setModel(m_model);
    m_compare->setModel(m_model);
    m_export->setModel(m_model);
    m_codes->setModel(m_model);
    m_teach->setModel(m_model);
    m_table->model()->clear();
    m_table->summary()->showEmpty();
    m_histograms->clearTensor();
    m_histograms->clearModel();
    m_modelHistogram->start(m_model, m_histograms->modelHistogramSpec());
    m_panel->setModelLoaded(true);
    m_panel->setTreeSelectionCount(0);
    m_recent->add(toQ(m_model->path));
    setWindowTitle(tr("QuantZoo — %1").arg(toDisplay(m_model->name)));
    setStatus(tr("Opened %1: %n tensor(s)", nullptr, int(m_model->tensors.size())).arg(toDisplay(m_model->name)));
    m_log->append(statusText());
    // Something to look at straight away: the first weight matrix (the first tensor if there is none),
    // previewed with the method panel's choices. A default, not a choice: a job's first result replaces it.
    const auto first = std::find_if(m_model->tensors.begin(), m_model->tensors.end(),
                                    [](const qz::TensorInfo& t) { return t.shape.size() == 2; });
    if (first != m_model->tensors.end()) focusTensor(toQ(first->name));
    else if (!m_model->tensors.empty()) focusTensor(toQ(m_model->tensors.front().name));
    m_focusIsDefault = true;
    emit modelOpened();
}

bool MainWindow::startRun() {
    const QString why = m_panel->validationError();
    if (!m_model || !why.isEmpty() || m_runner->isRunning()) {
        if (!why.isEmpty()) setStatus(why);
        return false;
    }
    qz::QuantizeParams params;
    params.spec = m_panel->spec();
    params.filter = m_panel->filter(m_tree->selectedTensorNames());
    params.modelHistogram = m_histograms->modelHistogramSpec();
    params.tensorBins = m_histograms->tensorBins();
    m_runSpec = params.spec;
    m_modelHistogram->cancel();  // the run counts the original weights itself
    m_result.reset();
    m_exportAction->setEnabled(false);
    m_table->model()->clear();
    m_histograms->clearModel(tr("Running…"));
    ModelPtr model = m_model;
    auto shown = [this](const qz::TensorQuantResult& r) {  // results appear live
        m_table->model()->addResult(r);
        const QString name = toQ(r.name);
        if (m_focus.isEmpty() || m_focusIsDefault) {  // the job's first result replaces a default choice
            m_focus.clear();
            focusTensor(name);
        } else if (name == m_focus) {
            m_histograms->showTensor(r, toQ(m_runSpec.describe()), &m_runSpec);
            emit tensorShown(name);
        }
    };
    const bool started = m_runner->run<ResultPtr>(
        [model, params, shown](const BackgroundJob::Context& ctx) -> qz::Result<ResultPtr> {
            auto onTensor = [&ctx, shown](const qz::TensorQuantResult& r) {
                ctx.post([shown, r] { shown(r); });
            };
            auto r = qz::runQuantize(*model, params, ctx.progress, onTensor);
            if (!r) return r.error();
            return std::make_shared<const qz::QuantizeResult>(std::move(*r));
        },
        [this](ResultPtr&& r) { onRunFinished(std::move(r)); });
    if (!started) return false;
    m_panel->setRunning(true);
    m_table->summary()->showRunning(toQ(params.spec.describe()));
    setStatus(tr("Running %1…").arg(toQ(params.spec.describe())));
    m_log->append(statusText());
    return true;
}

void MainWindow::cancelRun() { m_runner->cancel(); }

void MainWindow::onRunFinished(ResultPtr result) {
    m_result = std::move(result);
    m_panel->setRunning(false);
    m_panel->setProgress(1.0, tr("Done"), 0);
    m_table->model()->setResults(m_result->tensors);  // the complete, ordered set
    m_table->summary()->showResult(*m_result);
    m_histograms->showModel(m_result->modelOriginal, m_result->modelDequantized, toQ(m_result->spec.describe()));
    m_exportAction->setEnabled(true);
    m_evaluate->setQuantizeResult(m_model, m_result);  // a variant to measure (PPL, KLD)
    m_compare->addVariant(qz::variantFromQuantizeResult(*m_model, *m_result));
    m_codes->setResult(m_result);                      // LLM.int8(): the calibrated outlier features
    const QString f = m_focus;
    m_focus.clear();
    focusTensor(!f.isEmpty() ? f : (m_result->tensors.empty() ? QString() : toQ(m_result->tensors.front().name)));
    setStatus(tr("Done: %n tensor(s) in %1 s", nullptr, int(m_result->tensors.size())).arg(m_result->seconds, 0, 'f', 2));
    m_log->append(statusText());
    emit runFinished();
}

void MainWindow::onRunCancelled() {
    // Nothing half-done stays on screen as if it were done.
    m_panel->setRunning(false);
    m_panel->setProgress(0, tr("Cancelled"), 0);
    m_table->model()->clear();
    m_table->summary()->showCancelled();
    m_histograms->clearModel(tr("Cancelled"));
    m_histograms->clearTensor(tr("Cancelled"));
    m_focus.clear();
    m_result.reset();
    m_exportAction->setEnabled(false);
    setStatus(tr("Cancelled"));
    m_log->append(tr("Run cancelled; partial results discarded"));
}

void MainWindow::focusTensor(const QString& name) {
    m_focusIsDefault = false;
    if (name.isEmpty() || name == m_focus || !m_model) return;
    const qz::TensorInfo* info = m_model->find(toStd(name));
    if (!info) return;
    m_focus = name;
    m_codes->setTensor(name);
    m_teach->setTensor(name);
    m_tree->setCurrentTensor(name);
    m_table->selectTensor(name);
    const qz::TensorQuantResult* r = m_table->model()->find(name);
    if (r && r->histOriginal.bins() == m_histograms->tensorBins()) {
        m_histograms->showTensor(*r, toQ(m_runSpec.describe()), &m_runSpec);
        emit tensorShown(name);
        return;
    }
    if (m_runner->isRunning()) {  // the job will deliver it (or it is not selected)
        m_histograms->clearTensor(tr("%1: waiting for the running job").arg(name));
        return;
    }
    m_histograms->clearTensor(tr("Analysing %1…").arg(name));
    m_previewSpec = m_result ? m_result->spec : m_panel->spec();
    m_analyzer->analyze(m_model, size_t(info - m_model->tensors.data()), m_previewSpec, m_histograms->tensorBins());
}

bool MainWindow::exportReport(const QString& dir, QString* error) {
    if (!m_model || !m_result) {
        if (error) *error = tr("Nothing to export: run a quantization first.");
        return false;
    }
    const qz::TensorQuantResult* focus = m_table->model()->find(m_focus);
    auto written = writeReportFolder(dir, *m_model, *m_result, focus);
    if (!written) {
        if (error) *error = toQ(written.error().message);
        return false;
    }
    setStatus(tr("Report written to %1").arg(dir));
    m_log->append(tr("Report: %1").arg(written->join(QStringLiteral(", "))));
    return true;
}

QString MainWindow::statusText() const { return m_statusLabel->text(); }

void MainWindow::setStatus(const QString& text) { m_statusLabel->setText(text); }

void MainWindow::showError(const QString& title, const QString& message) {
    m_lastError = message;
    setStatus(title + QStringLiteral(": ") + message);
    m_log->appendError(message);
    auto* box = new QMessageBox(QMessageBox::Critical, title, message, QMessageBox::Ok, this);
    box->setObjectName(QStringLiteral("errorBox"));
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();  // window-modal but non-blocking: no nested event loop
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
    if (e->mimeData()->hasUrls() && !e->mimeData()->urls().isEmpty() && e->mimeData()->urls().front().isLocalFile())
        e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
    const auto urls = e->mimeData()->urls();
    if (urls.isEmpty() || !urls.front().isLocalFile()) return;
    e->acceptProposedAction();
    openPath(urls.front().toLocalFile());
}

void MainWindow::closeEvent(QCloseEvent* e) {
    QSettings().setValue(QStringLiteral("window/geometry"), saveGeometry());
    m_runner->cancel();
    QMainWindow::closeEvent(e);
}

}  // namespace qz::ui

#include "compare_workspace.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QSvgGenerator>
#include <QTabWidget>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <qcustomplot.h>
#include <utility>

#include "app_options.h"
#include "common/safe_file.h"
#include "evaluate_jobs.h"
#include "export/gguf_export.h"
#include "histogram_plot.h"
#include "text_choice.h"
#include "variants/row_sources.h"

namespace qz::ui {

namespace {
constexpr int kMaxSelected = 8;

QColor variantColor(int i) {
    static const QColor kColors[] = {QColor(255, 127, 14), QColor(44, 160, 44),   QColor(148, 103, 189),
                                     QColor(140, 86, 75),  QColor(227, 119, 194), QColor(127, 127, 127),
                                     QColor(188, 189, 34), QColor(23, 190, 207)};
    return kColors[i % 8];
}

QTableWidgetItem* cell(const QString& text, double value = std::nan(""), bool right = true) {
    auto* it = new QTableWidgetItem(text);
    it->setFlags(it->flags() & ~Qt::ItemIsEditable);
    if (right) it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    if (!std::isnan(value)) it->setData(Qt::UserRole, value);
    return it;
}

// The same file or folder, however it was named (relative, absolute, through a link).
bool samePath(const std::string& a, const std::string& b) {
    if (a == b) return true;
    const QString ca = QFileInfo(toQ(a)).canonicalFilePath(), cb = QFileInfo(toQ(b)).canonicalFilePath();
    return !ca.isEmpty() && ca == cb;
}

QString mib(uint64_t b) {
    return QStringLiteral("%1 KiB").arg(double(b) / 1024.0, 0, 'f', 1);
}

bool savePlot(QCustomPlot* plot, const QString& path, const QString& title, QString* error) {
    const QString suffix = QFileInfo(path).suffix().toLower();
    const int w = std::max(900, plot->width()), h = std::max(560, plot->height());
    bool ok = false;
    if (suffix == QLatin1String("png")) {
        ok = plot->savePng(path, w, h, 1.0);
    } else if (suffix == QLatin1String("pdf")) {
        ok = plot->savePdf(path, w, h);
    } else if (suffix == QLatin1String("svg")) {
        QSvgGenerator gen;
        gen.setFileName(path);
        gen.setSize(QSize(w, h));
        gen.setViewBox(QRect(0, 0, w, h));
        gen.setTitle(title);
        QCPPainter painter;
        if (painter.begin(&gen)) {
            plot->toPainter(&painter, w, h);
            ok = painter.end();
        }
    } else {
        if (error) *error = QObject::tr("unknown image format '%1' (use .png, .svg or .pdf)").arg(suffix);
        return false;
    }
    if (!ok && error) *error = QObject::tr("could not write %1").arg(path);
    return ok;
}

// A small grid image of several plots (the small multiples) written through QPainter.
bool saveGrid(const QList<HistogramPlot*>& plots, const QString& path, QString* error) {
    if (plots.isEmpty()) {
        if (error) *error = QObject::tr("nothing to export");
        return false;
    }
    const int cols = std::min<int>(4, int(plots.size())), rows = (int(plots.size()) + cols - 1) / cols;
    const int cw = 450, ch = 300, w = cols * cw, h = rows * ch;
    auto paint = [&](QCPPainter& painter) {
        painter.fillRect(QRect(0, 0, w, h), Qt::white);
        for (int i = 0; i < plots.size(); ++i) {
            painter.save();
            painter.translate((i % cols) * cw, (i / cols) * ch);
            plots[i]->customPlot()->toPainter(&painter, cw, ch);
            painter.restore();
        }
    };
    const QString suffix = QFileInfo(path).suffix().toLower();
    bool ok = false;
    if (suffix == QLatin1String("png")) {
        QImage img(w, h, QImage::Format_ARGB32);
        img.fill(Qt::white);
        QCPPainter painter(&img);
        paint(painter);
        painter.end();
        ok = img.save(path, "PNG");
    } else if (suffix == QLatin1String("svg")) {
        QSvgGenerator gen;
        gen.setFileName(path);
        gen.setSize(QSize(w, h));
        gen.setViewBox(QRect(0, 0, w, h));
        QCPPainter painter;
        if (painter.begin(&gen)) {
            paint(painter);
            ok = painter.end();
        }
    } else if (suffix == QLatin1String("pdf")) {
        QPdfWriter pdf(path);
        pdf.setPageSize(QPageSize(QSizeF(w, h), QPageSize::Point));
        pdf.setPageMargins(QMarginsF(0, 0, 0, 0));
        pdf.setResolution(72);
        QCPPainter painter;
        if (painter.begin(&pdf)) {
            paint(painter);
            ok = painter.end();
        }
    } else {
        if (error) *error = QObject::tr("unknown image format '%1' (use .png, .svg or .pdf)").arg(suffix);
        return false;
    }
    if (!ok && error) *error = QObject::tr("could not write %1").arg(path);
    return ok;
}
} // namespace

CompareWorkspace::CompareWorkspace(QWidget* parent)
    : QWidget(parent), m_runner(new BackgroundJob(this)), m_histJob(new BackgroundJob(this)) {
    auto* root = new QVBoxLayout(this);

    // Row 1: adding variants, the project file.
    auto* addRow = new QHBoxLayout;
    m_spec = new QLineEdit(this);
    m_spec->setMinimumWidth(120);
    m_spec->setPlaceholderText(tr("method, e.g. absmax:4:group:64, zeropoint:8:row, nf4"));
    m_addSpec = new QPushButton(tr("Add method"), this);
    m_addFile = new QPushButton(tr("Add GGUF…"), this);
    m_addFolder = new QPushButton(tr("Add GPTQ / EXL2…"), this);
    m_addFolder->setToolTip(tr("Add a GPTQ checkpoint folder or an EXL2 folder"));
    m_addMixes = new QPushButton(tr("Add llama.cpp mixes…"), this);
    m_addMixes->setToolTip(
        tr("Export Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K into a folder and add them"));
    m_open = new QPushButton(tr("Open…"), this);
    m_open->setToolTip(tr("Open a saved comparison (project file)"));
    m_save = new QPushButton(tr("Save…"), this);
    m_save->setToolTip(tr("Save this comparison: variants, settings and results (project file)"));
    addRow->addWidget(m_spec, 1);
    addRow->addWidget(m_addSpec);
    addRow->addWidget(m_addFile);
    addRow->addWidget(m_addFolder);
    addRow->addWidget(m_addMixes);
    addRow->addSpacing(12);
    addRow->addWidget(m_open);
    addRow->addWidget(m_save);
    root->addLayout(addRow);

    // Row 2: evaluation settings and what to show.
    auto* evalRow = new QHBoxLayout;
    m_text = new QComboBox(this);
    m_text->addItem(tr("shakespeare-valid.txt (bundled)"), QString());
    m_text->addItem(tr("Choose a file…"), QStringLiteral("?"));
    m_ctx = new QSpinBox(this);
    m_ctx->setRange(8, 32768);
    m_ctx->setValue(128);
    m_chunks = new QSpinBox(this);
    m_chunks->setRange(0, 100000);
    m_chunks->setSpecialValueText(tr("all"));
    m_chunks->setValue(32);
    m_evaluate = new QPushButton(tr("Evaluate selected"), this);
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setEnabled(false);
    m_tensor = new QComboBox(this);
    m_tensor->setMinimumContentsLength(20);
    m_tensor->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_overlay = new QCheckBox(tr("Overlay"), this);
    m_yMetric = new QComboBox(this);
    m_yMetric->addItem(tr("mean KLD"));
    m_yMetric->addItem(tr("PPL"));
    evalRow->addWidget(new QLabel(tr("Text"), this));
    evalRow->addWidget(m_text, 1);
    evalRow->addWidget(new QLabel(tr("-c"), this));
    evalRow->addWidget(m_ctx);
    evalRow->addWidget(new QLabel(tr("Chunks"), this));
    evalRow->addWidget(m_chunks);
    evalRow->addWidget(m_evaluate);
    evalRow->addWidget(m_cancel);
    root->addLayout(evalRow);
    m_memory = new QLabel(this);
    m_memory->setTextFormat(Qt::PlainText);
    root->addWidget(m_memory);
    auto* showRow = new QHBoxLayout;
    showRow->addWidget(new QLabel(tr("Tensor"), this));
    showRow->addWidget(m_tensor, 1);
    showRow->addWidget(m_overlay);
    showRow->addWidget(new QLabel(tr("Scatter y"), this));
    showRow->addWidget(m_yMetric);
    root->addLayout(showRow);

    auto* split = new QSplitter(Qt::Horizontal, this);
    m_list = new QListWidget(split);
    m_list->setMinimumWidth(150);
    m_list->setToolTip(tr("Tick 2 to 8 variants to compare"));
    split->addWidget(m_list);
    m_views = new QTabWidget(split);
    split->addWidget(m_views);
    split->setStretchFactor(1, 4);
    root->addWidget(split, 1);

    auto exportButtons = [this](QWidget* page, QVBoxLayout* lay, const QString& id, bool table) {
        auto* row = new QHBoxLayout;
        row->addStretch(1);
        auto* b = new QPushButton(table ? tr("Export CSV…") : tr("Export figure…"), page);
        b->setObjectName(QStringLiteral("export_") + id);
        connect(b, &QPushButton::clicked, this, [this, id, table] { exportDialog(id, table); });
        row->addWidget(b);
        lay->addLayout(row);
    };

    // Histograms: small multiples (or one overlaid plot) and the errors.
    m_histPage = new QWidget(m_views);
    auto* hl = new QVBoxLayout(m_histPage);
    m_histGrid = new QGridLayout;
    hl->addLayout(m_histGrid, 3);
    m_errorPlot = new HistogramPlot(m_histPage);
    m_errorPlot->setTitle(tr("Error (variant − original), shared bins"));
    m_errorPlot->setMinimumHeight(200);
    hl->addWidget(m_errorPlot, 2);
    auto* hx = new QHBoxLayout;
    hx->addStretch(1);
    for (const QString& id : {QStringLiteral("histograms"), QStringLiteral("errors")}) {
        auto* b = new QPushButton(
            id == QLatin1String("errors") ? tr("Export errors…") : tr("Export histograms…"), m_histPage);
        b->setObjectName(QStringLiteral("export_") + id);
        connect(b, &QPushButton::clicked, this, [this, id] { exportDialog(id, false); });
        hx->addWidget(b);
    }
    hl->addLayout(hx);
    m_views->addTab(m_histPage, tr("Histograms"));

    auto* layersPage = new QWidget(m_views);
    auto* ll = new QVBoxLayout(layersPage);
    m_layers = new QCustomPlot(layersPage);
    m_layers->setMinimumHeight(300);
    m_layers->xAxis->setLabel(tr("decoder layer"));
    m_layers->yAxis->setLabel(tr("SQNR of the layer's weights (dB)"));
    m_layers->legend->setVisible(true);
    m_layers->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    ll->addWidget(m_layers, 1);
    exportButtons(layersPage, ll, QStringLiteral("layers"), false);
    m_views->addTab(layersPage, tr("Per layer"));

    auto* tablePage = new QWidget(m_views);
    auto* tl = new QVBoxLayout(tablePage);
    m_table = new QTableWidget(0, ColCount, tablePage);
    m_table->setHorizontalHeaderLabels({tr("Variant"), tr("Kind"), tr("Tensor size"), tr("Bits/weight"),
                                        tr("MSE"), tr("Max |err|"), tr("SQNR dB"), tr("Cosine"), tr("PPL"),
                                        tr("Mean KLD"), tr("Same top %")});
    m_table->horizontalHeader()->setSectionResizeMode(ColVariant, QHeaderView::Stretch);
    m_table->verticalHeader()->setVisible(false);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    tl->addWidget(m_table, 1);
    auto* tx = new QHBoxLayout;
    tx->addStretch(1);
    for (const QString& id : {QStringLiteral("tensor"), QStringLiteral("variants")}) {
        auto* b = new QPushButton(
            id == QLatin1String("tensor") ? tr("Export tensor CSV…") : tr("Export variants CSV…"), tablePage);
        b->setObjectName(QStringLiteral("export_") + id);
        connect(b, &QPushButton::clicked, this, [this, id] { exportDialog(id, true); });
        tx->addWidget(b);
    }
    tl->addLayout(tx);
    m_views->addTab(tablePage, tr("Table"));

    auto* scatterPage = new QWidget(m_views);
    auto* sl = new QVBoxLayout(scatterPage);
    m_scatter = new QCustomPlot(scatterPage);
    m_scatter->setMinimumHeight(300);
    m_scatter->xAxis->setLabel(tr("bits per weight"));
    m_scatter->setInteractions(QCP::iSelectPlottables);
    sl->addWidget(m_scatter, 1);
    exportButtons(scatterPage, sl, QStringLiteral("scatter"), false);
    m_views->addTab(scatterPage, tr("Size vs KLD"));

    auto* bottom = new QHBoxLayout;
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_status = new QLabel(this);
    bottom->addWidget(m_progress, 1);
    bottom->addWidget(m_status, 2);
    root->addLayout(bottom);

    connect(m_addSpec, &QPushButton::clicked, this, [this] {
        QString err;
        if (!addMethod(m_spec->text(), &err) && !err.isEmpty()) m_status->setText(err);
    });
    connect(m_spec, &QLineEdit::returnPressed, m_addSpec, &QPushButton::click);
    connect(m_addFile, &QPushButton::clicked, this, [this] { chooseFile(false); });
    connect(m_addFolder, &QPushButton::clicked, this, [this] { chooseFile(true); });
    connect(m_addMixes, &QPushButton::clicked, this, [this] {
        const QString d = QFileDialog::getExistingDirectory(this, tr("Folder for the GGUF files"));
        if (!d.isEmpty()) addStandardMixes(d);
    });
    connect(m_evaluate, &QPushButton::clicked, this, [this] { evaluate(); });
    connect(m_cancel, &QPushButton::clicked, this, &CompareWorkspace::cancel);
    connect(m_save, &QPushButton::clicked, this, [this] {
        const QString p = QFileDialog::getSaveFileName(this, tr("Save comparison"),
                                                       QStringLiteral("comparison.qzcompare.json"),
                                                       tr("Comparison (*.json)"));
        QString err;
        if (!p.isEmpty() && !saveProject(p, &err)) QMessageBox::warning(this, tr("Save comparison"), err);
    });
    connect(m_open, &QPushButton::clicked, this, [this] {
        const QString p =
            QFileDialog::getOpenFileName(this, tr("Open comparison"), QString(), tr("Comparison (*.json)"));
        QString err;
        if (!p.isEmpty() && !openProject(p, &err)) QMessageBox::warning(this, tr("Open comparison"), err);
    });
    connect(m_text, qOverload<int>(&QComboBox::activated), this, [this](int i) {
        if (m_text->itemData(i).toString() != QLatin1String("?")) return;
        const QString f = QFileDialog::getOpenFileName(this, tr("Evaluation text"), QString(),
                                                       tr("Text (*.txt);;All files (*)"));
        setTextPath(f);
    });
    connect(m_text, qOverload<int>(&QComboBox::currentIndexChanged), this,
            &CompareWorkspace::updateMemoryLabel);
    connect(m_ctx, &QSpinBox::valueChanged, this, &CompareWorkspace::updateMemoryLabel);
    connect(m_chunks, &QSpinBox::valueChanged, this, &CompareWorkspace::updateMemoryLabel);
    connect(m_list, &QListWidget::itemChanged, this, [this](QListWidgetItem*) {
        if (selected().size() > kMaxSelected) { // the 9th tick is refused
            m_status->setText(tr("At most %1 variants side by side").arg(kMaxSelected));
            setSelected(selected().mid(0, kMaxSelected));
            return;
        }
        m_c.selected.clear();
        for (int i : selected())
            m_c.selected.push_back(i);
        refresh();
    });
    connect(m_list, &QListWidget::currentRowChanged, this, [this](int row) { setCurrentVariant(row); });
    connect(m_table, &QTableWidget::cellClicked, this, [this](int row, int) {
        const QVariant v =
            m_table->item(row, ColVariant) ? m_table->item(row, ColVariant)->data(Qt::UserRole) : QVariant();
        if (v.isValid()) setCurrentVariant(v.toInt());
    });
    connect(m_tensor, qOverload<int>(&QComboBox::activated), this, [this](int) {
        m_c.tensor = toStd(m_tensor->currentData().toString());
        refresh();
    });
    connect(m_overlay, &QCheckBox::toggled, this, [this](bool) { requestHistograms(); });
    connect(m_yMetric, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int) { rebuildScatter(); });
    connect(m_scatter, &QCustomPlot::plottableClick, this,
            [this](QCPAbstractPlottable* p, int, QMouseEvent*) {
                const QVariant v = p->property("variant");
                if (v.isValid()) setCurrentVariant(v.toInt());
            });

    for (BackgroundJob* job : {m_runner, m_histJob}) {
        connect(job, &BackgroundJob::progress, this, [this](double f, const QString& step) {
            m_progress->setValue(int(std::lround(1000 * std::clamp(f, 0.0, 1.0))));
            m_status->setText(step);
        });
        connect(job, &BackgroundJob::failed, this, [this, job](const QString& msg) {
            if (job == m_runner) {
                setRunning(false);
                m_evaluating = false;
            }
            m_status->setText(tr("failed: %1").arg(msg));
            if (job == m_histJob) m_histPending = false;
            emit jobFinished();
        });
        connect(job, &BackgroundJob::cancelled, this, [this, job] {
            if (job == m_runner) {
                setRunning(false);
                m_evaluating = false;
            }
            m_status->setText(tr("cancelled"));
        });
    }
    connect(m_runner, &BackgroundJob::finished, this, [this] {
        setRunning(false);
        m_progress->setValue(1000);
        if (std::exchange(m_evaluating, false)) {
            m_status->setText(tr("evaluated"));
            m_views->setCurrentIndex(3); // the size-vs-KLD scatter
            emit evaluationFinished();
        }
        emit jobFinished();
    });
    setModel(nullptr);
}

void CompareWorkspace::setModel(ModelPtr model) {
    m_runner->cancel();
    m_histJob->cancel();
    const bool same = model && m_model && samePath(model->path, m_model->path);
    m_model = std::move(model);
    if (!same) {
        m_c = qz::Comparison();
        m_current = -1;
    }
    m_c.modelPath = m_model ? m_model->path : std::string();
    m_tensor->clear();
    if (m_model)
        for (const auto& t : m_model->tensors)
            if (t.shape.size() == 2) m_tensor->addItem(toDisplay(t.name), toQ(t.name)); // shown escaped
    if (m_pending && m_model && samePath(m_pending->modelPath, m_model->path)) {
        qz::Comparison c = std::move(*m_pending);
        m_pending.reset();
        applyComparison(std::move(c));
        return;
    }
    if (m_c.tensor.empty() && m_tensor->count()) m_c.tensor = toStd(m_tensor->itemData(0).toString());
    setRunning(false);
    rebuildList();
    refresh();
}

int CompareWorkspace::addVariant(qz::Variant v) {
    // Names stay unique, so the list, the table and the project file name one variant each.
    const std::string base = v.name.empty() ? v.label : v.name;
    std::string name = base;
    for (int k = 2;; ++k) {
        bool taken = false;
        for (const auto& o : m_c.variants)
            taken |= o.name == name;
        if (!taken) break;
        name = base + " (" + std::to_string(k) + ")";
    }
    v.name = name;
    m_c.variants.push_back(std::move(v));
    const int index = int(m_c.variants.size()) - 1;
    if (int(m_c.selected.size()) < kMaxSelected) m_c.selected.push_back(index);
    rebuildList();
    refresh();
    emit variantsChanged();
    return index;
}

bool CompareWorkspace::addFile(const QString& path) {
    if (!m_model || m_runner->isRunning()) return false;
    ModelPtr model = m_model;
    const std::string p = toStd(path);
    const bool started = m_runner->run<qz::Variant>(
        [model, p](const BackgroundJob::Context& ctx) {
            return qz::openFileVariant(*model, p, ctx.progress);
        },
        [this, model](qz::Variant&& v) {
            if (model == m_model) addVariant(std::move(v));
        });
    if (started) setRunning(true);
    return started;
}

bool CompareWorkspace::addMethod(const QString& specText, QString* error) {
    auto spec = qz::parseMethodSpec(toStd(specText.trimmed()));
    if (!spec) {
        if (error) *error = toQ(spec.error().message);
        return false;
    }
    if (qz::needsCalibration(spec->method)) spec->calibrationPath = toStd(textPath());
    if (!m_model || m_runner->isRunning()) return false;
    ModelPtr model = m_model;
    const int threads = m_threads;
    const qz::QuantSpec s = *spec;
    const std::string name = toStd(specText.trimmed());
    const bool started = m_runner->run<qz::Variant>(
        [model, s, threads, name](const BackgroundJob::Context& ctx) -> qz::Result<qz::Variant> {
            auto v = qz::makeFakeQuantVariant(*model, s, ctx.progress, threads);
            if (v) v->name = name;
            return v;
        },
        [this, model](qz::Variant&& v) {
            if (model == m_model) addVariant(std::move(v));
        });
    if (started) setRunning(true);
    return started;
}

QStringList CompareWorkspace::standardMixes() {
    return {QStringLiteral("Q8_0"),   QStringLiteral("Q6_K"),   QStringLiteral("Q5_K_M"),
            QStringLiteral("Q4_K_M"), QStringLiteral("Q3_K_M"), QStringLiteral("Q2_K")};
}

bool CompareWorkspace::addStandardMixes(const QString& dir, const QStringList& types) {
    if (!m_model || m_runner->isRunning() || types.isEmpty()) return false;
    ModelPtr model = m_model;
    std::vector<std::string> ts;
    for (const QString& t : types)
        ts.push_back(toStd(t));
    const std::string folder = toStd(dir);
    const bool started =
        m_runner->start([this, model, ts, folder](const BackgroundJob::Context& ctx) -> qz::Status {
            const double n = double(ts.size());
            for (size_t i = 0; i < ts.size(); ++i) {
                auto part = [&ctx, i, n](double from, double width) {
                    return [&ctx, i, n, from, width](const qz::ProgressInfo& p) {
                        return ctx.progress({(double(i) + from + width * p.fraction) / n, p.step});
                    };
                };
                qz::GgufExportParams p;
                p.type = ts[i];
                p.outputPath =
                    (std::filesystem::path(folder) / (model->name + "." + ts[i] + ".gguf")).string();
                if (auto st = qz::refuseOverwritingInputs(p.outputPath, {model->path}); !st)
                    return st.error();
                auto r = qz::exportGguf(*model, p, part(0.0, 0.8));
                if (!r) return r.error();
                auto v = qz::openFileVariant(*model, r->path, part(0.8, 0.2));
                if (!v) return v.error();
                ctx.post([this, model, v = std::move(*v)]() mutable {
                    if (model == m_model) addVariant(std::move(v));
                });
            }
            return qz::okStatus();
        });
    if (started) setRunning(true);
    return started;
}

void CompareWorkspace::setSelected(const QList<int>& indices) {
    m_c.selected.clear();
    for (int i : indices)
        if (i >= 0 && i < variantCount() && int(m_c.selected.size()) < kMaxSelected &&
            std::find(m_c.selected.begin(), m_c.selected.end(), i) == m_c.selected.end())
            m_c.selected.push_back(i);
    rebuildList();
    refresh();
}

QList<int> CompareWorkspace::selected() const {
    QList<int> out;
    for (int i = 0; i < m_list->count(); ++i)
        if (m_list->item(i)->checkState() == Qt::Checked) out.append(i);
    return out;
}

void CompareWorkspace::setTensor(const QString& name) {
    const int i = m_tensor->findData(name);
    if (i < 0) return;
    m_tensor->setCurrentIndex(i);
    m_c.tensor = toStd(name);
    refresh();
}

QString CompareWorkspace::tensor() const {
    return toQ(m_c.tensor);
}

void CompareWorkspace::setOverlay(bool on) {
    m_overlay->setChecked(on);
}

void CompareWorkspace::setYMetric(bool kld) {
    m_yMetric->setCurrentIndex(kld ? 0 : 1);
}

void CompareWorkspace::setCurrentVariant(int index) {
    if (index < 0 || index >= variantCount() || index == m_current) return;
    m_current = index;
    {
        const QSignalBlocker block(m_list);
        m_list->setCurrentRow(index);
    }
    for (int r = 0; r < m_table->rowCount(); ++r)
        if (m_table->item(r, ColVariant) &&
            m_table->item(r, ColVariant)->data(Qt::UserRole).toInt() == index) {
            const QSignalBlocker block(m_table);
            m_table->selectRow(r);
        }
    // Redrawn after the click that may have called this has returned (the clicked graph is replaced).
    QMetaObject::invokeMethod(this, &CompareWorkspace::rebuildScatter, Qt::QueuedConnection);
    m_status->setText(tr("%1: %2, %3 bits per weight")
                          .arg(toDisplay(variant(index).name), toDisplay(variant(index).label))
                          .arg(variant(index).bitsPerWeight, 0, 'f', 3));
    emit currentVariantChanged(index);
}

void CompareWorkspace::setTextPath(const QString& path) { selectTextFile(m_text, path); }

QString CompareWorkspace::textPath() const {
    const QString p = m_text->currentData().toString();
    return p.isEmpty() || p == QLatin1String("?") ? sampleTextPath() : p;
}

void CompareWorkspace::setContext(int nCtx) {
    m_ctx->setValue(nCtx);
}
void CompareWorkspace::setChunks(int nChunks) {
    m_chunks->setValue(nChunks);
}

void CompareWorkspace::rebuildList() {
    const QSignalBlocker block(m_list);
    m_list->clear();
    for (int i = 0; i < variantCount(); ++i) {
        const auto& v = variant(i);
        auto* it = new QListWidgetItem(toDisplay(v.name), m_list);
        it->setFlags(it->flags() | Qt::ItemIsUserCheckable);
        const bool on = std::find(m_c.selected.begin(), m_c.selected.end(), i) != m_c.selected.end();
        it->setCheckState(on ? Qt::Checked : Qt::Unchecked);
        it->setToolTip(QStringLiteral("%1 — %2, %3 bits per weight%4")
                           .arg(toQ(std::string(qz::variantKindName(v.kind))), toDisplay(v.label))
                           .arg(v.bitsPerWeight, 0, 'f', 3)
                           .arg(v.path.empty() ? QString() : QStringLiteral("\n") + toDisplay(v.path)));
    }
    if (m_current >= 0 && m_current < m_list->count()) m_list->setCurrentRow(m_current);
}

void CompareWorkspace::refresh() {
    updateMemoryLabel();
    rebuildTable();
    rebuildLayers();
    rebuildScatter();
    requestHistograms();
}

void CompareWorkspace::rebuildTable() {
    const std::string tensorName = m_c.tensor;
    m_table->setRowCount(0);
    for (int i : m_c.selected) {
        if (i < 0 || i >= variantCount()) continue;
        const auto& v = variant(i);
        const int r = m_table->rowCount();
        m_table->insertRow(r);
        m_table->setItem(r, ColVariant, cell(toDisplay(v.name), double(i), false));
        m_table->item(r, ColVariant)->setForeground(variantColor(i));
        m_table->setItem(
            r, ColKind,
            cell(toQ(std::string(qz::variantKindName(v.kind))) + QStringLiteral(" · ") + toDisplay(v.label),
                 std::nan(""), false));
        if (const qz::VariantTensor* t = v.find(tensorName)) {
            m_table->setItem(r, ColBytes, cell(mib(t->bytes), double(t->bytes)));
            m_table->setItem(r, ColBpw, cell(QString::number(t->bitsPerWeight, 'f', 3), t->bitsPerWeight));
            m_table->setItem(r, ColMse, cell(QString::number(t->error.mse, 'e', 4), t->error.mse));
            m_table->setItem(r, ColMaxAbs, cell(QString::number(t->error.maxAbs, 'g', 5), t->error.maxAbs));
            m_table->setItem(r, ColSqnr, cell(QString::number(t->error.sqnrDb, 'f', 2), t->error.sqnrDb));
            m_table->setItem(r, ColCosine, cell(QString::number(t->error.cosine, 'f', 6), t->error.cosine));
        } else {
            for (int c = ColBytes; c <= ColCosine; ++c)
                m_table->setItem(r, c, cell(tr("not quantized")));
        }
        if (v.eval.done) {
            m_table->setItem(
                r, ColPpl,
                cell(QStringLiteral("%1 ± %2").arg(v.eval.ppl, 0, 'f', 4).arg(v.eval.pplError, 0, 'f', 4),
                     v.eval.ppl));
            m_table->setItem(r, ColKld, cell(QString::number(v.eval.meanKld, 'f', 6), v.eval.meanKld));
            m_table->setItem(r, ColSameTop,
                             cell(QString::number(100.0 * v.eval.sameTop, 'f', 3), 100.0 * v.eval.sameTop));
        } else {
            const QString why = v.eval.error.empty() ? QString() : tr("error");
            for (int c = ColPpl; c < ColCount; ++c)
                m_table->setItem(r, c, cell(why));
            if (!why.isEmpty()) m_table->item(r, ColPpl)->setToolTip(toDisplay(v.eval.error));
        }
        if (i == m_current) m_table->selectRow(r);
    }
}

void CompareWorkspace::rebuildLayers() {
    m_layers->clearGraphs();
    double lo = INFINITY, hi = -INFINITY;
    int maxLayer = 0;
    for (int i : m_c.selected) {
        if (i < 0 || i >= variantCount()) continue;
        QCPGraph* g = m_layers->addGraph();
        g->setName(toDisplay(variant(i).name));
        g->setPen(QPen(variantColor(i), 2));
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 5));
        for (const auto& [layer, e] : qz::perLayerError(variant(i))) {
            if (layer < 0 || !std::isfinite(e.sqnrDb)) continue;
            g->addData(layer, e.sqnrDb);
            lo = std::min(lo, e.sqnrDb);
            hi = std::max(hi, e.sqnrDb);
            maxLayer = std::max(maxLayer, layer);
        }
    }
    m_layers->xAxis->setRange(-0.5, maxLayer + 0.5);
    if (std::isfinite(lo)) m_layers->yAxis->setRange(lo - 1, hi + 1);
    m_layers->legend->setVisible(m_layers->graphCount() > 0);
    m_layers->replot();
}

void CompareWorkspace::rebuildScatter() {
    m_scatter->clearPlottables();
    m_scatter->clearItems();
    const bool kld = m_yMetric->currentIndex() == 0;
    m_scatter->yAxis->setLabel(kld ? tr("mean KL-divergence vs the original") : tr("perplexity"));
    std::vector<double> xs, ys;
    std::vector<int> idx;
    for (int i = 0; i < variantCount(); ++i) {
        const auto& v = variant(i);
        if (!v.eval.done || v.bitsPerWeight <= 0) continue;
        xs.push_back(v.bitsPerWeight);
        ys.push_back(kld ? v.eval.meanKld : v.eval.ppl);
        idx.push_back(i);
    }
    const auto front = qz::paretoFront(xs, ys);
    if (front.size() >= 2) {
        QCPGraph* line = m_scatter->addGraph();
        line->setName(tr("Pareto front"));
        line->setPen(QPen(QColor(214, 39, 40), 1.5, Qt::DashLine));
        line->setSelectable(QCP::stNone);
        for (size_t k : front)
            line->addData(xs[k], ys[k]);
    }
    double x0 = INFINITY, x1 = -INFINITY, y1 = 0, y0 = INFINITY;
    for (size_t k = 0; k < xs.size(); ++k) {
        const auto& v = variant(idx[k]);
        const bool mix = v.kind == qz::VariantKind::GgufFile && qz::isStandardMix(v.label);
        QCPGraph* g = m_scatter->addGraph();
        g->setProperty("variant", idx[k]);
        g->setName(toDisplay(v.name));
        g->setLineStyle(QCPGraph::lsNone);
        const bool current = idx[k] == m_current;
        g->setScatterStyle(QCPScatterStyle(mix ? QCPScatterStyle::ssDiamond : QCPScatterStyle::ssDisc,
                                           current ? QPen(Qt::black, 2) : QPen(variantColor(idx[k])),
                                           QBrush(variantColor(idx[k])), current ? 13 : 9));
        g->addData(xs[k], ys[k]);
        auto* label = new QCPItemText(m_scatter);
        label->setLayer(QStringLiteral("grid")); // below the points, so a click on a point reaches its graph
        label->setSelectable(false);
        label->position->setCoords(xs[k], ys[k]);
        label->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
        label->setPadding(QMargins(8, 0, 0, 6));
        label->setText(mix ? toDisplay(v.label) : toDisplay(v.name));
        if (mix) label->setFont(QFont(label->font().family(), label->font().pointSize(), QFont::Bold));
        x0 = std::min(x0, xs[k]);
        x1 = std::max(x1, xs[k]);
        y0 = std::min(y0, ys[k]);
        y1 = std::max(y1, ys[k]);
    }
    if (std::isfinite(x0)) {
        const double dx = std::max(0.5, 0.1 * (x1 - x0)), dy = std::max(1e-6, 0.15 * (y1 - y0));
        m_scatter->xAxis->setRange(std::max(0.0, x0 - dx), x1 + 2 * dx);
        m_scatter->yAxis->setRange(kld ? std::max(0.0, y0 - dy) : y0 - dy, y1 + dy);
    }
    m_scatter->replot();
}

std::optional<QPointF> CompareWorkspace::scatterPoint(int variantIndex) const {
    for (int g = 0; g < m_scatter->graphCount(); ++g) {
        QCPGraph* graph = m_scatter->graph(g);
        if (graph->property("variant").isValid() && graph->property("variant").toInt() == variantIndex &&
            !graph->data()->isEmpty()) {
            const auto it = graph->data()->constBegin();
            return QPointF(m_scatter->xAxis->coordToPixel(it->key),
                           m_scatter->yAxis->coordToPixel(it->value));
        }
    }
    return std::nullopt;
}

void CompareWorkspace::requestHistograms() {
    QList<int> order;
    for (int i : m_c.selected)
        if (i >= 0 && i < variantCount() && variant(i).find(m_c.tensor)) order.append(i);
    if (!m_model || order.isEmpty() || m_c.tensor.empty()) {
        for (HistogramPlot* p : m_histPlots)
            p->deleteLater();
        m_histPlots.clear();
        m_errorPlot->clear(tr("Tick variants that quantized this tensor"));
        return;
    }
    m_histJob->cancel();
    std::vector<qz::Variant> vs;
    for (int i : order) {
        qz::Variant v = variant(i);
        v.tensors.erase(std::remove_if(v.tensors.begin(), v.tensors.end(),
                                       [&](const qz::VariantTensor& t) { return t.name != m_c.tensor; }),
                        v.tensors.end());
        vs.push_back(std::move(v));
    }
    ModelPtr model = m_model;
    const std::string name = m_c.tensor;
    const quint64 request = ++m_histRequest;
    m_histPending = true;
    m_histJob->run<qz::TensorComparison>(
        [model, vs, name](const BackgroundJob::Context& ctx) {
            return qz::compareTensor(*model, vs, name, 120, ctx.progress);
        },
        [this, order, request](qz::TensorComparison&& tc) {
            if (request != m_histRequest) return;
            m_histPending = false;
            showHistograms(tc, order);
        });
}

void CompareWorkspace::showHistograms(const qz::TensorComparison& tc, const QList<int>& order) {
    for (HistogramPlot* p : m_histPlots) {
        m_histGrid->removeWidget(p);
        p->deleteLater();
    }
    m_histPlots.clear();
    const QString tensorName = toDisplay(tc.tensor); // titles
    if (m_overlay->isChecked()) {
        auto* p = new HistogramPlot(m_histPage);
        p->setTitle(tr("%1: all variants").arg(tensorName));
        QList<HistogramSeries> s{{tr("original"), tc.original, HistogramPlot::originalColor()}};
        for (int k = 0; k < order.size(); ++k)
            s.append({toDisplay(variant(order[k]).name), tc.values[size_t(k)], variantColor(order[k])});
        p->setSeries(s);
        m_histGrid->addWidget(p, 0, 0);
        m_histPlots.append(p);
    } else {
        const int cols = order.size() <= 2 ? int(order.size()) : (order.size() <= 4 ? 2 : 4);
        double yMax = 0;
        for (int k = 0; k < order.size(); ++k) {
            auto* p = new HistogramPlot(m_histPage);
            p->setMinimumSize(150, 130);
            p->setTitle(toDisplay(variant(order[k]).name));
            p->setLegendVisible(false);
            p->setSeries({{tr("original"), tc.original, HistogramPlot::originalColor()},
                          {toDisplay(variant(order[k]).name), tc.values[size_t(k)], variantColor(order[k])}});
            m_histGrid->addWidget(p, k / cols, k % cols);
            m_histPlots.append(p);
            yMax = std::max(yMax, p->customPlot()->yAxis->range().upper);
        }
        // Shared axes: the same x range (the bins are shared) and the largest y range.
        for (HistogramPlot* p : m_histPlots) {
            p->customPlot()->xAxis->setRange(tc.original.lo, tc.original.hi);
            p->customPlot()->yAxis->setRange(0, yMax);
            p->customPlot()->replot();
        }
    }
    QList<HistogramSeries> errs;
    for (int k = 0; k < order.size(); ++k)
        errs.append({toDisplay(variant(order[k]).name), tc.errors[size_t(k)], variantColor(order[k])});
    m_errorPlot->setTitle(tr("%1: error (variant − original), shared bins").arg(tensorName));
    m_errorPlot->setSeries(errs);
    emit histogramsShown();
}

void CompareWorkspace::setRunning(bool on) {
    m_cancel->setEnabled(on);
    for (QPushButton* b : {m_addSpec, m_addFile, m_addFolder, m_addMixes, m_evaluate, m_open})
        b->setEnabled(!on && m_model);
    m_save->setEnabled(!on && m_model);
    if (on) m_progress->setValue(0);
}

void CompareWorkspace::setThreads(int threads) {
    m_threads = threads;
    updateMemoryLabel();
}

void CompareWorkspace::setAvailableMemoryOverride(uint64_t bytes) {
    m_availableOverride = bytes;
    updateMemoryLabel();
}

qz::MemoryEstimate CompareWorkspace::memoryEstimate() const {
    if (!m_model || m_c.selected.empty()) return {};
    qz::EvalMemorySettings s;
    s.nCtx = m_ctx->value();
    s.nChunks = m_chunks->value() > 0 ? m_chunks->value() : -1;
    s.threads = m_threads;
    s.textBytes = uint64_t(std::max<qint64>(0, QFileInfo(textPath()).size()));
    // qz::evaluateComparison re-makes one variant's weights at a time (variantRunnable) and frees them.
    for (int i : m_c.selected) {
        if (i < 0 || i >= variantCount()) continue;
        const qz::Variant& v = variant(i);
        qz::EvalVariantMemory m;
        if (v.kind == qz::VariantKind::GgufFile)
            m.fileBytes = v.bytes;
        else // only tensors no row source serves are made whole as F32 (GPT-2's Conv1D weights)
            for (const auto& t : v.tensors)
                if (const qz::TensorInfo* ti = m_model->find(t.name); !ti || !qz::readableByRows(*ti))
                    m.overrideValues += t.numel;
        s.variants.push_back(m);
    }
    return evaluationMemory(*m_model, s);
}

void CompareWorkspace::updateMemoryLabel() {
    showMemoryEstimate(m_memory, memoryEstimate(), availableMemory(m_availableOverride));
}

bool CompareWorkspace::evaluate() {
    if (!m_model || m_runner->isRunning() || m_c.selected.empty()) return false;
    QFile f(textPath());
    if (!f.open(QIODevice::ReadOnly)) {
        m_status->setText(tr("cannot read %1").arg(textPath()));
        return false;
    }
    if (auto fits = qz::checkMemoryFits(memoryEstimate(), availableMemory(m_availableOverride)); !fits) {
        m_status->setText(tr("Not enough memory: %1. Use a shorter context or fewer chunks, or select fewer "
                             "variants.")
                              .arg(toQ(fits.error().message)));
        return false;
    }
    const QByteArray bytes = f.readAll();
    m_c.textPath = toStd(textPath());
    m_c.nCtx = m_ctx->value();
    m_c.nChunks = m_chunks->value();
    qz::EvalParams p;
    p.nCtx = m_c.nCtx;
    p.nChunks = m_c.nChunks > 0 ? m_c.nChunks : -1;
    p.threads = m_threads;
    // The worker evaluates a copy; each result is posted back by index (the list only grows meanwhile).
    auto work = std::make_shared<qz::Comparison>(m_c);
    ModelPtr model = m_model;
    const std::vector<int> which = m_c.selected;
    const bool started = m_runner->start(
        [this, work, model, which, p, text = std::string(bytes.constData(), size_t(bytes.size()))](
            const BackgroundJob::Context& ctx) -> qz::Status {
            return qz::evaluateComparison(model, *work, text, p, which, ctx.progress,
                                          [this, &ctx, model](int index, const qz::VariantEval& e) {
                                              ctx.post([this, model, index, e] {
                                                  if (model != m_model) return;
                                                  if (index < 0)
                                                      m_c.originalEval = e;
                                                  else if (index < variantCount())
                                                      m_c.variants[size_t(index)].eval = e;
                                                  rebuildTable();
                                                  rebuildScatter();
                                              });
                                          });
        });
    if (!started) return false;
    setRunning(true);
    m_evaluating = true;
    return true;
}

void CompareWorkspace::cancel() {
    m_runner->cancel();
}

bool CompareWorkspace::saveProject(const QString& path, QString* error) {
    m_c.nCtx = m_ctx->value();
    m_c.nChunks = m_chunks->value();
    if (m_c.textPath.empty()) m_c.textPath = toStd(textPath());
    auto st = qz::saveComparison(m_c, toStd(path));
    if (!st) {
        if (error) *error = toDisplay(st.error().message);
        return false;
    }
    m_status->setText(tr("saved %1").arg(path));
    return true;
}

bool CompareWorkspace::openProject(const QString& path, QString* error) {
    auto c = qz::loadComparison(toStd(path));
    if (!c) {
        if (error) *error = toDisplay(c.error().message);
        return false;
    }
    if (m_model && samePath(m_model->path, c->modelPath)) {
        applyComparison(std::move(*c));
        return true;
    }
    const QString modelPath = toQ(c->modelPath);
    m_pending = std::move(*c);
    emit modelRequested(modelPath);
    return true;
}

void CompareWorkspace::applyComparison(qz::Comparison c) {
    const std::string modelPath = m_c.modelPath;
    m_c = std::move(c);
    m_c.modelPath = modelPath;
    if (m_c.selected.size() > size_t(kMaxSelected)) m_c.selected.resize(size_t(kMaxSelected));
    m_current = -1;
    setTextPath(m_c.textPath == toStd(sampleTextPath()) ? QString() : toQ(m_c.textPath));
    m_ctx->setValue(m_c.nCtx);
    m_chunks->setValue(m_c.nChunks);
    if (m_tensor->findData(toQ(m_c.tensor)) >= 0)
        m_tensor->setCurrentIndex(m_tensor->findData(toQ(m_c.tensor)));
    else if (m_tensor->count())
        m_c.tensor = toStd(m_tensor->itemData(0).toString());
    setRunning(false);
    rebuildList();
    refresh();
    emit variantsChanged();
}

bool CompareWorkspace::exportFigure(const QString& id, const QString& path, QString* error) {
    if (id == QLatin1String("histograms")) return saveGrid(m_histPlots, path, error);
    if (id == QLatin1String("errors")) return m_errorPlot->exportTo(path, 900, 560, error);
    if (id == QLatin1String("layers")) return savePlot(m_layers, path, tr("SQNR per layer"), error);
    if (id == QLatin1String("scatter"))
        return savePlot(m_scatter, path, tr("Size against KL-divergence"), error);
    if (error) *error = tr("no figure '%1'").arg(id);
    return false;
}

bool CompareWorkspace::exportTable(const QString& id, const QString& path, QString* error) {
    qz::Comparison sel = m_c;
    sel.variants.clear();
    for (int i : m_c.selected)
        if (i >= 0 && i < variantCount()) sel.variants.push_back(variant(i));
    std::string text;
    if (id == QLatin1String("tensor"))
        text = qz::tensorFiguresCsv(sel, m_c.tensor);
    else if (id == QLatin1String("variants"))
        text = qz::comparisonCsv(sel, m_model ? qz::modelBitsPerWeight(*m_model) : 0,
                                 m_model ? m_model->totalBytes() : 0);
    else {
        if (error) *error = tr("no table '%1'").arg(id);
        return false;
    }
    auto st = qz::writeFileAtomic(toStd(path), text);
    if (!st && error) *error = toDisplay(st.error().message);
    return bool(st);
}

void CompareWorkspace::chooseFile(bool folder) {
    const QString p = folder ? QFileDialog::getExistingDirectory(this, tr("Add a GPTQ or EXL2 folder"))
                             : QFileDialog::getOpenFileName(this, tr("Add a GGUF file"), QString(),
                                                            tr("GGUF (*.gguf);;All files (*)"));
    if (!p.isEmpty()) addFile(p);
}

void CompareWorkspace::exportDialog(const QString& id, bool table) {
    const QString filter = table ? tr("CSV (*.csv)") : tr("PNG (*.png);;SVG (*.svg);;PDF (*.pdf)");
    QString selectedFilter;
    QString p = QFileDialog::getSaveFileName(this, table ? tr("Export table") : tr("Export figure"),
                                             id + (table ? QStringLiteral(".csv") : QStringLiteral(".png")),
                                             filter, &selectedFilter);
    if (p.isEmpty()) return;
    if (QFileInfo(p).suffix().isEmpty())
        p += table ? QStringLiteral(".csv") : QStringLiteral(".") + selectedFilter.left(3).toLower();
    QString err;
    if (!(table ? exportTable(id, p, &err) : exportFigure(id, p, &err)))
        QMessageBox::warning(this, tr("Export"), err);
}

} // namespace qz::ui

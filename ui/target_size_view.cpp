#include "target_size_view.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSlider>
#include <QSplitter>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QVBoxLayout>
#include <cmath>
#include <qcustomplot.h>

#include "common/file_util.h"
#include "infer/imatrix_collect.h"

namespace qz::ui {

namespace {
enum Col { ColName, ColType, ColBytes, ColLoss, ColMeasured, ColCount };
constexpr double kMiB = 1048576.0;
constexpr uint64_t kMaxCalibBytes = 1ull << 30;
} // namespace

TargetSizeView::TargetSizeView(QWidget* parent)
    : QWidget(parent), m_measurer(new BackgroundJob(this)), m_chooser(new BackgroundJob(this)) {
    m_calib = new QLineEdit(this);
    m_calib->setPlaceholderText(tr("calibration text, used when the export page names no importance matrix"));
    auto* browse = new QPushButton(tr("…"), this);
    m_measureKld = new QCheckBox(
        tr("Weigh each tensor by its measured KL-divergence on the text (one model run per tensor)"), this);
    m_measure = new QPushButton(tr("Measure"), this);
    m_measure->setToolTip(tr("Quantize a sample of every tensor's rows to every candidate type and weigh the "
                             "error by the importance matrix"));
    m_size = new QDoubleSpinBox(this);
    m_size->setDecimals(3);
    m_size->setSuffix(tr(" MiB"));
    m_size->setRange(0, 1e9);
    m_slider = new QSlider(Qt::Horizontal, this);
    m_slider->setRange(0, 1000);
    m_apply = new QPushButton(tr("Use for export"), this);
    for (QWidget* w : std::initializer_list<QWidget*>{m_size, m_slider, m_apply})
        w->setEnabled(false);

    auto* form = new QFormLayout;
    auto* calibRow = new QHBoxLayout;
    calibRow->addWidget(m_calib, 1);
    calibRow->addWidget(browse);
    calibRow->addWidget(m_measure);
    form->addRow(tr("Calibration"), calibRow);
    form->addRow(QString(), m_measureKld);
    auto* sizeRow = new QHBoxLayout;
    sizeRow->addWidget(m_size);
    sizeRow->addWidget(m_slider, 1);
    sizeRow->addWidget(m_apply);
    form->addRow(tr("Target size"), sizeRow);

    m_table = new QTableWidget(0, ColCount, this);
    m_table->setHorizontalHeaderLabels(
        {tr("tensor"), tr("type"), tr("bytes"), tr("predicted loss"), tr("measured KLD")});
    m_table->horizontalHeader()->setSectionResizeMode(ColName, QHeaderView::ResizeToContents);
    m_table->horizontalHeader()->setSectionResizeMode(ColLoss, QHeaderView::Stretch);
    m_table->verticalHeader()->hide();
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(QStringLiteral("targetSizePlot"));
    m_plot->setMinimumSize(300, 200);
    m_plot->xAxis->setLabel(tr("file size (MiB)"));
    m_plot->yAxis->setLabel(tr("predicted loss (≈ KLD)"));
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_plot->legend->setVisible(true);
    m_plot->legend->setBrush(QColor(255, 255, 255, 200));
    m_summary = new QLabel(tr("Measure the model's tensors to choose types for a size."), this);
    m_summary->setWordWrap(true);

    auto* split = new QSplitter(Qt::Horizontal, this);
    split->addWidget(m_table);
    split->addWidget(m_plot);
    split->setStretchFactor(0, 1);
    split->setStretchFactor(1, 1);
    auto* lay = new QVBoxLayout(this);
    lay->addLayout(form);
    lay->addWidget(m_summary);
    lay->addWidget(split, 1);

    m_chooseTimer.setSingleShot(true);
    m_chooseTimer.setInterval(100);
    connect(&m_chooseTimer, &QTimer::timeout, this, [this] { choose(); });
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Calibration text"), QString(),
                                                       tr("Text (*.txt);;All files (*)"));
        if (!f.isEmpty()) m_calib->setText(f);
    });
    connect(m_measure, &QPushButton::clicked, this, [this] { startMeasure(); });
    connect(m_size, &QDoubleSpinBox::valueChanged, this, [this](double mib) {
        if (m_syncing || !m_measurement) return;
        m_syncing = true;
        const double lo = double(m_measurement->minBytes), hi = double(m_measurement->maxBytes);
        m_slider->setValue(hi > lo ? qRound((mib * kMiB - lo) / (hi - lo) * 1000) : 0);
        m_syncing = false;
        scheduleChoose();
    });
    connect(m_slider, &QSlider::valueChanged, this, [this](int v) {
        if (m_syncing || !m_measurement) return;
        m_syncing = true;
        const double lo = double(m_measurement->minBytes), hi = double(m_measurement->maxBytes);
        m_size->setValue((lo + (hi - lo) * v / 1000.0) / kMiB);
        m_syncing = false;
        scheduleChoose();
    });
    connect(m_apply, &QPushButton::clicked, this, [this] {
        if (!m_plan) return;
        QMap<QString, QString> types;
        for (const auto& t : m_plan->tensors)
            if (t.chosen) types[toQ(t.name)] = toQ(std::string(qz::dtypeName(t.type)));
        emit applyRequested(toQ(m_plan->fileType), types, m_imatrixUsed);
    });
    connect(m_measurer, &BackgroundJob::progress, this, [this](double f, const QString& step, double) {
        m_summary->setText(tr("Measuring … %1 % (%2)").arg(qRound(f * 100)).arg(step));
    });
    connect(m_measurer, &BackgroundJob::failed, this, [this](const QString& msg) {
        m_measure->setEnabled(true);
        m_summary->setText(tr("Cannot measure: %1").arg(msg));
    });
    connect(m_measurer, &BackgroundJob::cancelled, this, [this] { m_measure->setEnabled(true); });
    connect(m_chooser, &BackgroundJob::failed, this, [this](const QString& msg) {
        m_summary->setText(tr("No plan: %1").arg(msg));
        m_apply->setEnabled(false);
    });
    setEnabled(false);
}

TargetSizeView::~TargetSizeView() {
    m_measurer->cancel();
    m_chooser->cancel();
    m_measurer->waitForIdle();
    m_chooser->waitForIdle();
}

void TargetSizeView::setModel(ModelPtr model) {
    m_measurer->cancel();
    m_chooser->cancel();
    m_model = std::move(model);
    m_measurement.reset();
    m_plan.reset();
    m_table->setRowCount(0);
    for (QWidget* w : std::initializer_list<QWidget*>{m_size, m_slider, m_apply})
        w->setEnabled(false);
    m_measure->setEnabled(true);
    m_summary->setText(tr("Measure the model's tensors to choose types for a size."));
    redrawPlot();
    setEnabled(m_model != nullptr);
}

void TargetSizeView::setTargetBytes(uint64_t bytes) {
    m_size->setValue(double(bytes) / kMiB);
}

void TargetSizeView::startMeasure() {
    if (!m_model) return;
    QString imatrix = m_imatrixSource ? m_imatrixSource().trimmed() : QString();
    const QString calib = m_calib->text().trimmed();
    if (imatrix.isEmpty() && calib.isEmpty()) {
        m_summary->setText(tr("Name an importance matrix on the export page or a calibration text here."));
        return;
    }
    if (m_measureKld->isChecked() && calib.isEmpty()) {
        m_summary->setText(tr("Measuring the KL-divergence needs a calibration text."));
        return;
    }
    const bool measureKld = m_measureKld->isChecked();
    std::string collectTo;
    if (imatrix.isEmpty()) {
        m_tmp = std::make_unique<QTemporaryDir>();
        if (!m_tmp->isValid()) {
            m_summary->setText(tr("Cannot create a temporary folder for the importance matrix."));
            return;
        }
        imatrix = m_tmp->filePath(QStringLiteral("imatrix.gguf"));
        collectTo = toStd(imatrix);
    }
    m_imatrixUsed = imatrix;
    ModelPtr model = m_model;
    const std::string calibPath = toStd(calib);
    const std::string imPath = toStd(imatrix);
    m_measure->setEnabled(false);
    m_measurer->run<TargetMeasurementPtr>(
        [model, calibPath, imPath, collectTo,
         measureKld](const BackgroundJob::Context& ctx) -> qz::Result<TargetMeasurementPtr> {
            return qz::runGuarded([&]() -> qz::Result<TargetMeasurementPtr> {
                std::string text;
                if (!collectTo.empty() || measureKld) {
                    auto t = qz::readRegularFile(calibPath, kMaxCalibBytes, ctx.cancelled);
                    if (!t) return t.error();
                    text = std::move(*t);
                }
                if (!collectTo.empty()) {
                    qz::ImatrixParams ip;
                    ip.nCtx = 512;
                    ip.processOutput = true;
                    ip.datasetName = calibPath;
                    auto im = qz::computeImatrix(*model, text, ip, [&](const qz::ProgressInfo& p) {
                        return ctx.progress(
                            qz::ProgressInfo{p.fraction * 0.3, "importance matrix: " + p.step});
                    });
                    if (!im) return im.error();
                    if (auto st = qz::writeImatrixGguf(*im, collectTo); !st) return st.error();
                }
                qz::SensitivityParams sp;
                sp.imatrixPath = imPath;
                if (measureKld) sp.kldText = text;
                const double base = collectTo.empty() ? 0.0 : 0.3;
                auto table = qz::measureSensitivity(*model, sp, [&](const qz::ProgressInfo& p) {
                    return ctx.progress(qz::ProgressInfo{base + p.fraction * (0.95 - base), p.step});
                });
                if (!table) return table.error();
                auto m = std::make_shared<TargetMeasurement>();
                m->table = std::move(*table);
                auto mixes = qz::standardMixPoints(*model, m->table);
                if (mixes) m->mixes = std::move(*mixes);
                uint64_t lo = m->table.headerAndFixedBytes, hi = m->table.headerAndFixedBytes;
                for (const auto& t : m->table.tensors) {
                    if (!t.quantizable) continue;
                    uint64_t a = UINT64_MAX, b = 0;
                    for (const auto& c : t.candidates)
                        a = std::min(a, (c.bytes + 31) / 32 * 32), b = std::max(b, (c.bytes + 31) / 32 * 32);
                    lo += a, hi += b;
                }
                m->minBytes = lo;
                m->maxBytes = hi;
                for (int i = 0; i <= 40; ++i) {
                    if (ctx.cancelled()) return qz::cancelledError();
                    const uint64_t target = lo + static_cast<uint64_t>((double(hi - lo) * i) / 40.0);
                    auto plan = qz::chooseTargetPlan(m->table, qz::TargetSpec{target, 0});
                    if (plan) m->curve.push_back({plan->fileBytes, plan->predictedLoss});
                }
                return TargetMeasurementPtr(std::move(m));
            });
        },
        [this](TargetMeasurementPtr&& m) { showMeasurement(m); });
}

void TargetSizeView::showMeasurement(const TargetMeasurementPtr& m) {
    m_measurement = m;
    m_measure->setEnabled(true);
    m_syncing = true;
    m_size->setRange(double(m->minBytes) / kMiB, double(m->maxBytes) / kMiB);
    m_syncing = false;
    for (QWidget* w : std::initializer_list<QWidget*>{m_size, m_slider})
        w->setEnabled(true);
    // Start at the Q4_K_M size when the model has it, else in the middle.
    uint64_t start = (m->minBytes + m->maxBytes) / 2;
    for (const auto& p : m->mixes)
        if (p.name == "Q4_K_M") start = p.fileBytes;
    m_summary->setText(tr("%1 tensors measured; sizes from %2 to %3 MiB.")
                           .arg(m->table.tensors.size())
                           .arg(double(m->minBytes) / kMiB, 0, 'f', 2)
                           .arg(double(m->maxBytes) / kMiB, 0, 'f', 2));
    redrawPlot();
    emit measured();
    setTargetBytes(start);
    scheduleChoose();
}

void TargetSizeView::scheduleChoose() {
    if (m_measurement) m_chooseTimer.start();
}

void TargetSizeView::choose() {
    if (!m_measurement) return;
    TargetMeasurementPtr m = m_measurement;
    const uint64_t target = static_cast<uint64_t>(std::llround(m_size->value() * kMiB));
    m_chooser->cancel();
    m_chooser->run<TargetPlanPtr>(
        [m, target](const BackgroundJob::Context&) -> qz::Result<TargetPlanPtr> {
            auto plan = qz::chooseTargetPlan(m->table, qz::TargetSpec{target, 0});
            if (!plan) return plan.error();
            return TargetPlanPtr(std::make_shared<const qz::TargetPlan>(std::move(*plan)));
        },
        [this](TargetPlanPtr&& p) { showPlan(p); });
}

void TargetSizeView::showPlan(const TargetPlanPtr& plan) {
    m_plan = plan;
    m_table->setRowCount(0);
    for (const auto& t : plan->tensors) {
        if (!t.chosen) continue;
        const int r = m_table->rowCount();
        m_table->insertRow(r);
        m_table->setItem(r, ColName, new QTableWidgetItem(toDisplay(t.name)));
        m_table->setItem(r, ColType, new QTableWidgetItem(toQ(std::string(qz::dtypeName(t.type)))));
        m_table->setItem(r, ColBytes, new QTableWidgetItem(QString::number(t.bytes)));
        m_table->setItem(r, ColLoss, new QTableWidgetItem(QString::number(t.loss, 'e', 3)));
        QString measured = QStringLiteral("—");
        if (m_measurement)
            for (const auto& tt : m_measurement->table.tensors)
                if (tt.name == t.name && tt.measuredKld >= 0)
                    measured = tr("%1 at %2")
                                   .arg(tt.measuredKld, 0, 'e', 3)
                                   .arg(toQ(std::string(qz::dtypeName(tt.kldType))));
        m_table->setItem(r, ColMeasured, new QTableWidgetItem(measured));
    }
    QString text = tr("Plan: %1 MiB (%2 bytes), %3 bits per weight, predicted loss %4 (≈ KLD)")
                       .arg(double(plan->fileBytes) / kMiB, 0, 'f', 3)
                       .arg(plan->fileBytes)
                       .arg(plan->bitsPerWeight, 0, 'f', 4)
                       .arg(plan->predictedLoss, 0, 'e', 3);
    // The standard mix nearest below in size, for comparison.
    const qz::MixPoint* near = nullptr;
    if (m_measurement)
        for (const auto& p : m_measurement->mixes)
            if (p.fileBytes <= plan->fileBytes && std::isfinite(p.predictedLoss) &&
                (!near || p.fileBytes > near->fileBytes))
                near = &p;
    if (near)
        text += tr("; %1 (%2 MiB): %3")
                    .arg(toQ(near->name))
                    .arg(double(near->fileBytes) / kMiB, 0, 'f', 3)
                    .arg(near->predictedLoss, 0, 'e', 3);
    m_summary->setText(text);
    m_apply->setEnabled(true);
    redrawPlot();
    emit planShown();
}

void TargetSizeView::redrawPlot() {
    m_plot->clearGraphs();
    m_plot->clearItems();
    if (!m_measurement) {
        m_plot->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    auto* curve = m_plot->addGraph();
    curve->setName(tr("target size"));
    curve->setPen(QPen(QColor(31, 119, 180), 2));
    for (const auto& [b, l] : m_measurement->curve)
        if (l > 0) curve->addData(double(b) / kMiB, l);
    auto* mixes = m_plot->addGraph();
    mixes->setName(tr("standard mixes"));
    mixes->setLineStyle(QCPGraph::lsNone);
    mixes->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QColor(255, 127, 14), 7));
    for (const auto& p : m_measurement->mixes) {
        if (!std::isfinite(p.predictedLoss) || p.predictedLoss <= 0) continue;
        mixes->addData(double(p.fileBytes) / kMiB, p.predictedLoss);
        auto* label = new QCPItemText(m_plot);
        label->position->setCoords(double(p.fileBytes) / kMiB, p.predictedLoss);
        label->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
        label->setText(toQ(p.name));
        label->setFont(QFont(font().family(), 7));
    }
    if (m_plan && m_plan->predictedLoss > 0) {
        auto* cur = m_plot->addGraph();
        cur->setName(tr("this plan"));
        cur->setLineStyle(QCPGraph::lsNone);
        cur->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDiamond, QColor(214, 39, 40), 11));
        cur->addData(double(m_plan->fileBytes) / kMiB, m_plan->predictedLoss);
    }
    m_plot->rescaleAxes();
    m_plot->xAxis->scaleRange(1.05);
    m_plot->yAxis->scaleRange(1.3);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

} // namespace qz::ui

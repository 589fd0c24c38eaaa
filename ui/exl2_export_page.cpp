#include "exl2_export_page.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLineEdit>
#include <QPointer>
#include <QPushButton>
#include <QSpinBox>
#include <cmath>

#include "layer_bar_chart.h"

namespace qz::ui {

namespace {
QString mib(uint64_t b) { return QStringLiteral("%1 MiB").arg(double(b) / 1048576.0, 0, 'f', 2); }
const QColor kTarget(214, 39, 40), kAchieved(44, 160, 44);
}  // namespace

Exl2ExportPage::Exl2ExportPage(QWidget* parent) : CalibratedExportPage(QStringLiteral("EXL2"), parent) {
    qRegisterMetaType<qz::exl2::LayerReport>();
    m_target = new QDoubleSpinBox(this);
    m_target->setRange(2.0, 8.5);
    m_target->setDecimals(2);
    m_target->setSingleStep(0.05);
    m_target->setValue(5.0);
    m_target->setToolTip(tr("Bits per weight over the decoder's linear layers (the optimizer's budget)"));
    m_head = new QComboBox(this);
    for (int b : {2, 3, 4, 5, 6, 8}) m_head->addItem(tr("%1-bit").arg(b), b);  // exllamav2's head options
    m_head->setCurrentIndex(m_head->findData(6));
    m_head->setToolTip(tr("Bits of lm_head"));
    m_measureRows = new QSpinBox(this);
    m_measureRows->setRange(1, 100000);
    m_measureRows->setValue(16);
    m_measureRows->setToolTip(tr("Calibration windows of the measurement pass (exllamav2: 16 × 2048 tokens); "
                                 "the Samples box below is the quantization pass (exllamav2: 100)"));
    m_measurement = new QLineEdit(this);
    m_measurement->setPlaceholderText(tr("optional: measurement.json of an earlier run (skips measuring)"));
    auto* browse = new QPushButton(tr("…"), this);
    auto* measRow = new QHBoxLayout;
    measRow->addWidget(m_measurement, 1);
    measRow->addWidget(browse);
    m_seed = new QSpinBox(this);
    m_seed->setRange(0, 1 << 30);
    m_seed->setToolTip(tr("Seed of the optimizer and of the calibration windows"));
    m_keep = new QCheckBox(tr("keep the dequantized weights (histograms, evaluation; 4 bytes per weight)"), this);
    m_keep->setChecked(true);
    m_metric = new QComboBox(this);
    m_metric->addItem(tr("bits per weight per layer"), BitsPerWeight);
    m_metric->addItem(tr("relative output error per layer"), RelativeError);

    QFormLayout* f = optionsForm();
    f->addRow(tr("Target bpw"), m_target);
    f->addRow(tr("Head bits"), m_head);
    f->addRow(tr("Measurement rows"), m_measureRows);
    f->addRow(tr("Measurement"), measRow);
    f->addRow(tr("Seed"), m_seed);
    f->addRow(QString(), m_keep);
    f->addRow(tr("Chart"), m_metric);

    registerKeepCheck(m_keep, {});
    connect(m_target, &QDoubleSpinBox::valueChanged, this, [this] { updateDefaultOutput(); });
    connect(m_head, &QComboBox::currentIndexChanged, this, [this] { updateDefaultOutput(); });
    connect(m_metric, &QComboBox::currentIndexChanged, this, [this] { redrawChart(); });
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("measurement.json"), QString(),
                                                       tr("Measurement (*.json);;All files (*)"));
        if (!f.isEmpty()) m_measurement->setText(f);
    });
    chart()->setTitle(tr("EXL2: bits per weight chosen per layer"));
    setLayerColumns({tr("layer"), tr("shape"), tr("setting"), tr("bpw"), tr("rel. error"), tr("s")});
}

void Exl2ExportPage::modelChanged() {
    // exllamav2's defaults: 100 quantization rows of 2048 tokens (bounded by the model's context).
    samplesSpin()->setValue(100);
    seqLenSpin()->setValue(std::min(2048, seqLenSpin()->maximum()));
    prepareRun();
}

qz::exl2::ExportParams Exl2ExportPage::params(const QString& outputDir, const QString& calibPath) const {
    qz::exl2::ExportParams p;
    p.targetBpw = m_target->value();
    p.headBits = m_head->currentData().toInt();
    p.calibPath = toStd(calibPath);
    p.measureCalib = {m_measureRows->value(), seqLenSpin()->value(), uint64_t(m_seed->value())};
    p.quantCalib = {samplesSpin()->value(), seqLenSpin()->value(), uint64_t(m_seed->value())};
    p.measurementPath = toStd(m_measurement->text().trimmed());
    p.outputDir = toStd(outputDir);
    p.resume = resumeCheck()->isChecked();
    p.seed = uint64_t(m_seed->value());
    p.keepOverrides = m_keep->isChecked();
    return p;
}

QString Exl2ExportPage::resultName() const {
    return tr("EXL2 %1 bpw h%2").arg(m_target->value(), 0, 'f', 2).arg(m_head->currentData().toInt());
}

QString Exl2ExportPage::defaultOutputName() const {
    return toQ(model()->name) + QStringLiteral("-exl2-%1bpw-h%2").arg(m_target->value(), 0, 'f', 2).arg(m_head->currentData().toInt());
}

BackgroundJob::Work Exl2ExportPage::makeWork(const QString& outputDir, const QString& calibPath, QString* error) {
    const qz::exl2::ExportParams p = params(outputDir, calibPath);
    if (model()->format != qz::ModelFormat::HuggingFaceFolder) {
        *error = tr("EXL2 export needs a Hugging Face model folder (config.json + safetensors)");
        return {};
    }
    // A chosen measurement.json: missing / empty / binary / huge files are refused here with a message
    // (the core parses it on the worker and reports a malformed one as a failed export).
    if (!p.measurementPath.empty() &&
        !checkTextFile(toQ(p.measurementPath), kMaxMeasurementBytes, error))
        return {};
    m_runTarget = p.targetBpw;
    ModelPtr m = model();
    QPointer<Exl2ExportPage> self(this);
    return [m, p, self](const BackgroundJob::Context& ctx) -> qz::Status {
        auto r = qz::exl2::exportExl2(*m, p, ctx.progress, [&ctx, self](const qz::exl2::LayerReport& l) {
            ctx.post([self, l] {
                if (self) self->onLayer(l);
            });
        });
        if (!r) return r.error();
        OverridesPtr ov = r->overrides.empty() ? nullptr : std::make_shared<const qz::WeightOverrides>(std::move(r->overrides));
        r->overrides.clear();
        auto res = std::make_shared<const qz::exl2::ExportResult>(std::move(*r));
        ctx.post([self, res, ov] {
            if (self) self->onFinished(res, ov);
        });
        return qz::okStatus();
    };
}

void Exl2ExportPage::prepareRun() {
    m_result.reset();
    m_reports.clear();
    redrawChart();
}

void Exl2ExportPage::setMetric(Metric m) { m_metric->setCurrentIndex(m_metric->findData(int(m))); }

void Exl2ExportPage::redrawChart() {
    LayerBarChart* c = chart();
    if (m_metric->currentData().toInt() == RelativeError) {
        c->reset({tr("relative output error")}, {QColor(148, 103, 189)});
        c->setValueLabel(tr("relative output error"));
    } else {
        c->reset({tr("bits per weight")});
        c->setValueLabel(tr("bits per weight"));
        const double target = m_result ? m_result->targetBpw : (m_runTarget > 0 ? m_runTarget : m_target->value());
        c->setReferenceLine(QStringLiteral("target"), target, tr("target %1 bpw").arg(target, 0, 'f', 2), kTarget);
        if (m_result)
            c->setReferenceLine(QStringLiteral("achieved"), m_result->achievedBpw,
                                tr("achieved %1 bpw").arg(m_result->achievedBpw, 0, 'f', 3), kAchieved, Qt::AlignRight);
    }
    for (const auto& r : m_reports) plotReport(r);
}

void Exl2ExportPage::plotReport(const qz::exl2::LayerReport& r) {
    const double v = m_metric->currentData().toInt() == RelativeError ? (r.relErr >= 0 ? r.relErr : std::nan("")) : r.bpw;
    chart()->setValue(0, toQ(r.name), v);
}

void Exl2ExportPage::onLayer(const qz::exl2::LayerReport& r) {
    m_reports.push_back(r);
    plotReport(r);
    auto fmt = [](double v) { return v >= 0 ? QString::number(v, 'g', 5) : QStringLiteral("—"); };
    addLayerRow({toQ(r.name), QStringLiteral("%1 × %2").arg(r.out).arg(r.in), toQ(r.setting),
                 QString::number(r.bpw, 'f', 3), fmt(r.relErr), QString::number(r.seconds, 'f', 2)},
                false);
    appendLog(QStringLiteral("%1 %2 %3 bpw %4  rel.err %5")
                  .arg(toDisplay(r.name), -44)
                  .arg(QStringLiteral("%1×%2").arg(r.out).arg(r.in), -10)
                  .arg(toDisplay(r.setting), -24)
                  .arg(r.bpw, 0, 'f', 3)
                  .arg(fmt(r.relErr)));
    noteLayer(toQ(r.name), false);
}

void Exl2ExportPage::onFinished(std::shared_ptr<const qz::exl2::ExportResult> r, OverridesPtr ov) {
    m_result = std::move(r);
    redrawChart();  // with the achieved line
    const uint64_t params = model()->totalParameters();
    const double bpwAll = params ? 8.0 * double(m_result->tensorBytes) / double(params) : 0.0;
    QString measure;
    if (m_result->measurementReused)
        measure = tr("measurement reused");
    else if (m_result->resumedModules > 0)
        measure = tr("measured %1 modules, %2 resumed from the interrupted run")
                      .arg(m_result->measuredModules)
                      .arg(m_result->resumedModules);
    else
        measure = tr("measured %1 modules").arg(m_result->measuredModules);
    const QString text = tr("Wrote %1: %2 file(s), %3 of tensors. Target %4 bpw, achieved %5 bpw over the "
                            "decoder's linear layers, head %6 bpw; %7; %8 layers in %9 s.")
                             .arg(toDisplay(m_result->outputDir))
                             .arg(m_result->files.size())
                             .arg(mib(m_result->tensorBytes))
                             .arg(m_result->targetBpw, 0, 'f', 2)
                             .arg(m_result->achievedBpw, 0, 'f', 3)
                             .arg(m_result->headBpw, 0, 'f', 2)
                             .arg(measure)
                             .arg(m_result->layers.size())
                             .arg(m_result->seconds, 0, 'f', 1);
    setResult(toQ(m_result->outputDir), std::move(ov), QString(), nullptr, text, m_result->tensorBytes, bpwAll);
}

}  // namespace qz::ui

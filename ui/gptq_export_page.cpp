#include "gptq_export_page.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QPointer>
#include <QSpinBox>
#include <cmath>
#include <set>

#include "gptq/gptq_layers.h"
#include "layer_bar_chart.h"

namespace qz::ui {

namespace {
QString mib(uint64_t b) { return QStringLiteral("%1 MiB").arg(double(b) / 1048576.0, 0, 'f', 2); }
}  // namespace

GptqExportPage::GptqExportPage(QWidget* parent) : CalibratedExportPage(QStringLiteral("GPTQ"), parent) {
    qRegisterMetaType<qz::gptq::LayerReport>();
    m_bits = new QComboBox(this);
    for (int b : {2, 3, 4, 8}) m_bits->addItem(tr("%1-bit").arg(b), b);
    m_bits->setCurrentIndex(2);
    m_group = new QComboBox(this);
    m_group->addItem(tr("one per row (−1)"), -1);
    for (int g : {32, 64, 128, 256, 1024}) m_group->addItem(QString::number(g), g);
    m_group->setCurrentIndex(m_group->findData(128));
    m_descAct = new QCheckBox(tr("act-order (desc_act): columns by decreasing Hessian diagonal"), this);
    m_static = new QCheckBox(tr("static groups (group parameters before any update)"), this);
    m_sym = new QComboBox(this);
    m_sym->addItem(tr("symmetric"), true);
    m_sym->addItem(tr("asymmetric (zero point)"), false);
    m_damp = new QDoubleSpinBox(this);
    m_damp->setRange(0.0, 1.0);
    m_damp->setDecimals(4);
    m_damp->setSingleStep(0.005);
    m_damp->setValue(0.01);
    m_damp->setToolTip(tr("damp_percent: this fraction of the mean Hessian diagonal is added to the diagonal"));
    m_trueSeq = new QCheckBox(tr("true-sequential (each layer group calibrated after the previous ones)"), this);
    m_trueSeq->setChecked(true);
    m_rtn = new QCheckBox(tr("RTN baseline (same bits and groups) beside GPTQ"), this);
    m_rtn->setChecked(true);
    m_keep = new QCheckBox(tr("keep the dequantized weights (histograms, evaluation; 4 bytes per weight)"), this);
    m_keep->setChecked(true);
    m_seed = new QSpinBox(this);
    m_seed->setRange(0, 1 << 30);
    m_seed->setToolTip(tr("Seed of the calibration windows' positions"));
    m_metric = new QComboBox(this);
    m_metric->addItem(tr("relative output error per layer"), RelativeError);
    m_metric->addItem(tr("AutoGPTQ loss per layer"), Loss);

    QFormLayout* f = optionsForm();
    f->addRow(tr("Bits"), m_bits);
    f->addRow(tr("Group size"), m_group);
    f->addRow(tr("Grid"), m_sym);
    f->addRow(tr("Damp"), m_damp);
    f->addRow(QString(), m_descAct);
    f->addRow(QString(), m_static);
    f->addRow(QString(), m_trueSeq);
    f->addRow(QString(), m_rtn);
    f->addRow(QString(), m_keep);
    f->addRow(tr("Seed"), m_seed);
    f->addRow(tr("Chart"), m_metric);

    for (QComboBox* b : {m_bits, m_group, m_sym})
        connect(b, &QComboBox::currentIndexChanged, this, [this] { updateDefaultOutput(); });
    connect(m_descAct, &QCheckBox::toggled, this, [this] { updateDefaultOutput(); });
    // The RTN baseline keeps a second full set of dequantized weights.
    registerKeepCheck(m_keep, [this] { return m_rtn->isChecked() ? 2 : 1; });
    connect(m_rtn, &QCheckBox::toggled, this, [this] { updateKeepLabel(); });
    connect(m_metric, &QComboBox::currentIndexChanged, this, [this] { redrawChart(); });
    chart()->setTitle(tr("GPTQ: per-layer error"));
    setLayerColumns({tr("layer"), tr("shape"), tr("rel. error"), tr("RTN rel. error"), tr("loss"), tr("s")});
}

qz::gptq::ExportParams GptqExportPage::params(const QString& outputDir, const QString& calibPath) const {
    qz::gptq::ExportParams p;
    p.quant.bits = m_bits->currentData().toInt();
    p.quant.groupSize = m_group->currentData().toInt();
    p.quant.sym = m_sym->currentData().toBool();
    p.quant.descAct = m_descAct->isChecked();
    p.quant.staticGroups = m_static->isChecked();
    p.quant.dampPercent = m_damp->value();
    p.trueSequential = m_trueSeq->isChecked();
    p.method = qz::gptq::Method::Gptq;
    p.rtnBaseline = m_rtn->isChecked();
    p.calibPath = toStd(calibPath);
    p.calib.samples = samplesSpin()->value();
    p.calib.seqLen = seqLenSpin()->value();
    p.calib.seed = uint64_t(m_seed->value());
    p.outputDir = toStd(outputDir);
    p.resume = resumeCheck()->isChecked();
    p.keepOverrides = m_keep->isChecked();
    return p;
}

QString GptqExportPage::resultName() const {
    const int g = m_group->currentData().toInt();
    return tr("GPTQ %1-bit %2%3%4")
        .arg(m_bits->currentData().toInt())
        .arg(g < 0 ? tr("per row") : QStringLiteral("g%1").arg(g))
        .arg(m_descAct->isChecked() ? tr(" act-order") : QString())
        .arg(m_sym->currentData().toBool() ? QString() : tr(" asym"));
}

QString GptqExportPage::defaultOutputName() const {
    const int g = m_group->currentData().toInt();
    QString n = toQ(model()->name);
    while (n.endsWith(QLatin1Char('/'))) n.chop(1);
    return n + QStringLiteral("-GPTQ-%1bit-%2%3%4")
                   .arg(m_bits->currentData().toInt())
                   .arg(g < 0 ? QStringLiteral("row") : QStringLiteral("g%1").arg(g))
                   .arg(m_descAct->isChecked() ? QStringLiteral("-act") : QString())
                   .arg(m_sym->currentData().toBool() ? QString() : QStringLiteral("-asym"));
}

BackgroundJob::Work GptqExportPage::makeWork(const QString& outputDir, const QString& calibPath, QString* error) {
    const qz::gptq::ExportParams p = params(outputDir, calibPath);
    if (auto s = qz::gptq::validateConfig(p.quant); !s) {
        *error = toQ(s.error().message);
        return {};
    }
    if (model()->format != qz::ModelFormat::HuggingFaceFolder) {
        *error = tr("GPTQ export needs a Hugging Face model folder (config.json + safetensors)");
        return {};
    }
    m_runHasRtn = p.rtnBaseline;
    ModelPtr m = model();
    QPointer<GptqExportPage> self(this);
    return [m, p, self](const BackgroundJob::Context& ctx) -> qz::Status {
        auto r = qz::gptq::exportGptq(*m, p, ctx.progress, [&ctx, self](const qz::gptq::LayerReport& l) {
            ctx.post([self, l] {
                if (self) self->onLayer(l);
            });
        });
        if (!r) return r.error();
        // The dequantized weights leave the result as shared, immutable variants for the views.
        OverridesPtr ov = r->overrides.empty() ? nullptr : std::make_shared<const qz::WeightOverrides>(std::move(r->overrides));
        OverridesPtr rtn =
            r->rtnOverrides.empty() ? nullptr : std::make_shared<const qz::WeightOverrides>(std::move(r->rtnOverrides));
        r->overrides.clear();
        r->rtnOverrides.clear();
        auto res = std::make_shared<const qz::gptq::ExportResult>(std::move(*r));
        ctx.post([self, res, ov, rtn] {
            if (self) self->onFinished(res, ov, rtn);
        });
        return qz::okStatus();
    };
}

void GptqExportPage::prepareRun() {
    m_result.reset();
    m_reports.clear();
    redrawChart();
}

void GptqExportPage::modelChanged() {
    m_runHasRtn = m_rtn->isChecked();
    prepareRun();  // empty slots for every layer of the new model
}

void GptqExportPage::setMetric(Metric m) { m_metric->setCurrentIndex(m_metric->findData(int(m))); }

void GptqExportPage::redrawChart() {
    const bool loss = m_metric->currentData().toInt() == Loss;
    LayerBarChart* c = chart();
    if (loss) {
        c->reset({tr("GPTQ loss")});
        c->setValueLabel(tr("Σ (w − q)² / U_cc² / 2"));
    } else {
        QStringList series{tr("GPTQ")};
        if (m_runHasRtn) series << tr("RTN (baseline)");
        c->reset(series);
        c->setValueLabel(tr("tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)"));
    }
    // Every layer's slot from the start, in the order GPTQ quantizes them.
    if (model()) {
        if (auto plan = qz::gptq::planLayers(*model())) {
            QStringList names;
            for (const auto& b : plan->blocks)
                for (const auto& g : b)
                    for (const auto& L : g) names << toQ(L.weightName);
            c->setLayers(names);
        }
    }
    for (const auto& r : m_reports) plotReport(r);
}

void GptqExportPage::plotReport(const qz::gptq::LayerReport& r) {
    const QString name = toQ(r.name);
    if (m_metric->currentData().toInt() == Loss) {
        chart()->setValue(0, name, r.loss);
        return;
    }
    chart()->setValue(0, name, r.relErr >= 0 ? r.relErr : std::nan(""));
    if (chart()->seriesCount() > 1) chart()->setValue(1, name, r.relErrRtn >= 0 ? r.relErrRtn : std::nan(""));
}

void GptqExportPage::onLayer(const qz::gptq::LayerReport& r) {
    m_reports.push_back(r);
    plotReport(r);
    auto fmt = [](double v) { return v >= 0 ? QString::number(v, 'g', 5) : QStringLiteral("—"); };
    addLayerRow({toQ(r.name), QStringLiteral("%1 × %2").arg(r.out).arg(r.in), fmt(r.relErr), fmt(r.relErrRtn),
                 QString::number(r.loss, 'g', 5), r.resumed ? tr("resumed") : QString::number(r.seconds, 'f', 2)},
                r.resumed);
    appendLog(QStringLiteral("%1 %2 rel.err %3  RTN %4  loss %5%6")
                  .arg(toQ(r.name), -44)
                  .arg(QStringLiteral("%1×%2").arg(r.out).arg(r.in), -10)
                  .arg(fmt(r.relErr), -11)
                  .arg(fmt(r.relErrRtn), -11)
                  .arg(r.loss, 0, 'g', 5)
                  .arg(r.resumed ? tr("  (resumed)") : QString()));
    noteLayer(toQ(r.name), r.resumed);
}

void GptqExportPage::onFinished(std::shared_ptr<const qz::gptq::ExportResult> r, OverridesPtr ov, OverridesPtr rtn) {
    m_result = std::move(r);
    double sumG = 0, sumR = 0;
    int nG = 0, nR = 0;
    for (const auto& l : m_result->layers) {
        if (l.relErr >= 0) sumG += l.relErr, ++nG;
        if (l.relErrRtn >= 0) sumR += l.relErrRtn, ++nR;
    }
    const uint64_t params = model()->totalParameters();
    const double bpw = params ? 8.0 * double(m_result->tensorBytes) / double(params) : 0.0;
    QString text = tr("Wrote %1: %2 file(s), %3 of tensors (%4 bits per weight over the whole model), %5 layers, "
                      "%6 calibration passes, %7 s.")
                       .arg(toQ(m_result->outputDir))
                       .arg(m_result->files.size())
                       .arg(mib(m_result->tensorBytes))
                       .arg(bpw, 0, 'f', 3)
                       .arg(m_result->layers.size())
                       .arg(m_result->calibrationPasses)
                       .arg(m_result->seconds, 0, 'f', 1);
    std::set<std::pair<int, int>> experts;
    for (const auto& l : m_result->layers)
        if (l.expert >= 0) experts.insert({l.block, l.expert});
    if (!experts.empty() && m_result->calibrationPasses > 0)
        text += QLatin1Char(' ') + tr("Experts: %1 of %2 had too few routed calibration tokens (%3 layers) and were "
                                      "quantized on their layer's averaged expert Hessian.")
                                       .arg(m_result->expertsFallback)
                                       .arg(experts.size())
                                       .arg(m_result->expertLayersFallback);
    if (nG > 0) {
        text += QLatin1Char(' ') + tr("Mean relative output error: GPTQ %1").arg(sumG / nG, 0, 'g', 4);
        if (nR > 0) text += tr(", RTN %1").arg(sumR / nR, 0, 'g', 4);
        text += QLatin1Char('.');
    }
    setResult(toQ(m_result->outputDir), std::move(ov), tr("RTN %1-bit (baseline)").arg(m_bits->currentData().toInt()),
              std::move(rtn), text, m_result->tensorBytes, bpw);
}

}  // namespace qz::ui

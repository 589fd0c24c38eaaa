// The GPTQ page of the Export workspace: AutoGPTQ-compatible checkpoint via
// qz::gptq::exportGptq (core/gptq/gptq_export.h), with
//  - options: bits 2/3/4/8, group size, act-order (desc_act), static groups, symmetric / asymmetric,
//    dampening, true-sequential, the RTN baseline, calibration seed, and whether to keep the dequantized
//    weights in memory for the histograms and the evaluation (costs 4 bytes per quantized weight);
//  - the chart: each layer's relative output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) on its calibration inputs as
//    it finishes, the RTN baseline's bar beside it; or AutoGPTQ's loss per layer;
//  - the result: the folder, the files, resumed layers, GPTQ vs RTN; evaluation of both variants.
#pragma once

#include <memory>
#include <vector>

#include "calibrated_export_page.h"
#include "gptq/gptq_export.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QSpinBox;

Q_DECLARE_METATYPE(qz::gptq::LayerReport)

namespace qz::ui {

class GptqExportPage : public CalibratedExportPage {
    Q_OBJECT
public:
    enum Metric { RelativeError, Loss };
    enum LayerColumn { ColName, ColShape, ColRelErr, ColRelErrRtn, ColLoss, ColSeconds, ColCount };

    explicit GptqExportPage(QWidget* parent = nullptr);

    // The parameters the form describes (output folder and calibration as given).
    qz::gptq::ExportParams params(const QString& outputDir, const QString& calibPath) const;
    // The finished run's result (its overrides moved into resultOverrides()); null before.
    std::shared_ptr<const qz::gptq::ExportResult> result() const { return m_result; }
    const std::vector<qz::gptq::LayerReport>& reports() const { return m_reports; }
    void setMetric(Metric m);

    QComboBox* bitsBox() const { return m_bits; }
    QComboBox* groupBox() const { return m_group; }
    QCheckBox* descActCheck() const { return m_descAct; }
    QCheckBox* staticGroupsCheck() const { return m_static; }
    QComboBox* symBox() const { return m_sym; }
    QDoubleSpinBox* dampSpin() const { return m_damp; }
    QCheckBox* trueSequentialCheck() const { return m_trueSeq; }
    QCheckBox* rtnCheck() const { return m_rtn; }
    QCheckBox* keepCheck() const { return m_keep; }
    QSpinBox* seedSpin() const { return m_seed; }
    QComboBox* metricBox() const { return m_metric; }

protected:
    BackgroundJob::Work makeWork(const QString& outputDir, const QString& calibPath, QString* error) override;
    QString defaultOutputName() const override;
    void prepareRun() override;
    void modelChanged() override;
    QString resultName() const override;
    std::optional<qz::VariantKind> folderKind() const override { return qz::VariantKind::GptqFolder; }

private:
    void onLayer(const qz::gptq::LayerReport& r);
    void onFinished(std::shared_ptr<const qz::gptq::ExportResult> r, OverridesPtr ov, OverridesPtr rtn);
    void redrawChart();
    void plotReport(const qz::gptq::LayerReport& r);

    std::shared_ptr<const qz::gptq::ExportResult> m_result;
    std::vector<qz::gptq::LayerReport> m_reports;
    bool m_runHasRtn = false;
    QComboBox* m_bits;
    QComboBox* m_group;
    QCheckBox* m_descAct;
    QCheckBox* m_static;
    QComboBox* m_sym;
    QDoubleSpinBox* m_damp;
    QCheckBox* m_trueSeq;
    QCheckBox* m_rtn;
    QCheckBox* m_keep;
    QSpinBox* m_seed;
    QComboBox* m_metric;
};

}  // namespace qz::ui

// The EXL2 page of the Export workspace: an exllamav2-loadable folder via qz::exl2::exportExl2
// (core/exl2/exl2_export.h), with
//  - options: target bits per weight, head bits (lm_head), measurement rows (the calibration box's
//    samples are the quantization rows), a measurement.json to reuse (skips the measurement pass), the
//    optimizer's seed, and whether to keep the dequantized weights for the histograms and the evaluation;
//  - progress through the phases measure → optimize → quantize → write with ETA and Cancel;
//  - the chart: the bits per weight of each linear as it is quantized (the optimizer's choice), a line
//    at the target and one at the achieved bits per weight; or each layer's relative output error;
//  - the result: the folder, measurement reused / measured / resumed, target vs achieved bpw.
#pragma once

#include <memory>
#include <vector>

#include "calibrated_export_page.h"
#include "exl2/exl2_export.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QSpinBox;

Q_DECLARE_METATYPE(qz::exl2::LayerReport)

namespace qz::ui {

class Exl2ExportPage : public CalibratedExportPage {
    Q_OBJECT
public:
    enum Metric { BitsPerWeight, RelativeError };

    explicit Exl2ExportPage(QWidget* parent = nullptr);
    static constexpr qint64 kMaxMeasurementBytes = qint64(256) << 20;  // as the core's reader

    qz::exl2::ExportParams params(const QString& outputDir, const QString& calibPath) const;
    std::shared_ptr<const qz::exl2::ExportResult> result() const { return m_result; }
    const std::vector<qz::exl2::LayerReport>& reports() const { return m_reports; }
    void setMetric(Metric m);

    QDoubleSpinBox* targetSpin() const { return m_target; }
    QComboBox* headBitsBox() const { return m_head; }
    QSpinBox* measureRowsSpin() const { return m_measureRows; }
    QLineEdit* measurementEdit() const { return m_measurement; }
    QSpinBox* seedSpin() const { return m_seed; }
    QCheckBox* keepCheck() const { return m_keep; }
    QComboBox* metricBox() const { return m_metric; }

protected:
    BackgroundJob::Work makeWork(const QString& outputDir, const QString& calibPath, QString* error) override;
    QString defaultOutputName() const override;
    void prepareRun() override;
    void modelChanged() override;
    QString resultName() const override;
    std::optional<qz::VariantKind> folderKind() const override { return qz::VariantKind::Exl2Folder; }

private:
    void onLayer(const qz::exl2::LayerReport& r);
    void onFinished(std::shared_ptr<const qz::exl2::ExportResult> r, OverridesPtr ov);
    void redrawChart();
    void plotReport(const qz::exl2::LayerReport& r);

    std::shared_ptr<const qz::exl2::ExportResult> m_result;
    std::vector<qz::exl2::LayerReport> m_reports;
    double m_runTarget = 0;
    QDoubleSpinBox* m_target;
    QComboBox* m_head;
    QSpinBox* m_measureRows;
    QLineEdit* m_measurement;
    QSpinBox* m_seed;
    QCheckBox* m_keep;
    QComboBox* m_metric;
};

}  // namespace qz::ui

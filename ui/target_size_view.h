// "Target size" on the GGUF export page: per-tensor types chosen for the least predicted loss within a
// file size (core/export/target_size.h).
//  - "Measure" runs the sensitivity measurement in the background (an importance matrix from the
//    export page, or one collected here from a calibration text first); optionally every tensor's
//    weight is measured as the KL-divergence with that tensor alone quantized (on the calibration
//    text), shown next to the prediction;
//  - a size field (MiB) and a slider between the smallest and the largest possible file choose the
//    plan (in the background as well): every tensor's type, bytes and predicted loss (≈ KL-divergence
//    in nats per token, core/export/README.md A);
//  - a plot of predicted loss against file size: the target-size curve, the standard mixes as labelled
//    points, the current plan marked;
//  - "Use for export" hands the plan to the export page (its file type and one type per tensor).
#pragma once

#include <QMap>
#include <QTimer>
#include <QWidget>
#include <functional>
#include <memory>

#include "background_job.h"
#include "export/target_size.h"
#include "qt_types.h"

class QCheckBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSlider;
class QTableWidget;
class QTemporaryDir;

namespace qz::ui {

struct TargetMeasurement {
    qz::SensitivityTable table;
    std::vector<qz::MixPoint> mixes;
    std::vector<std::pair<uint64_t, double>> curve; // file bytes, predicted loss
    uint64_t minBytes = 0, maxBytes = 0;
};
using TargetMeasurementPtr = std::shared_ptr<const TargetMeasurement>;
using TargetPlanPtr = std::shared_ptr<const qz::TargetPlan>;

class TargetSizeView : public QWidget {
    Q_OBJECT
  public:
    explicit TargetSizeView(QWidget* parent = nullptr);
    ~TargetSizeView() override;

    void setModel(ModelPtr model);
    // Where the export page's importance matrix path is read when "Measure" is pressed.
    void setImatrixSource(std::function<QString()> source) { m_imatrixSource = std::move(source); }

    BackgroundJob* measurer() const { return m_measurer; }
    BackgroundJob* chooser() const { return m_chooser; }
    QLineEdit* calibEdit() const { return m_calib; }
    QCheckBox* measureKldBox() const { return m_measureKld; }
    QPushButton* measureButton() const { return m_measure; }
    QPushButton* applyButton() const { return m_apply; }
    QDoubleSpinBox* sizeBox() const { return m_size; }
    QSlider* slider() const { return m_slider; }
    QTableWidget* table() const { return m_table; }
    QCustomPlot* plot() const { return m_plot; }
    QLabel* summary() const { return m_summary; }
    TargetMeasurementPtr measurement() const { return m_measurement; }
    TargetPlanPtr currentPlan() const { return m_plan; }
    // Sets the target (bytes) as the size field does.
    void setTargetBytes(uint64_t bytes);

  signals:
    void measured();
    void planShown();
    // The plan for the export page: its general.file_type, a type per tensor, the importance matrix used.
    void applyRequested(const QString& fileType, const QMap<QString, QString>& types,
                        const QString& imatrixPath);

  private:
    void startMeasure();
    void showMeasurement(const TargetMeasurementPtr& m);
    void scheduleChoose();
    void choose();
    void showPlan(const TargetPlanPtr& plan);
    void redrawPlot();

    ModelPtr m_model;
    std::function<QString()> m_imatrixSource;
    std::unique_ptr<QTemporaryDir> m_tmp; // an importance matrix collected here
    BackgroundJob* m_measurer;
    BackgroundJob* m_chooser;
    QTimer m_chooseTimer;
    QLineEdit* m_calib;
    QCheckBox* m_measureKld;
    QPushButton* m_measure;
    QPushButton* m_apply;
    QDoubleSpinBox* m_size;
    QSlider* m_slider;
    QTableWidget* m_table;
    QCustomPlot* m_plot;
    QLabel* m_summary;
    TargetMeasurementPtr m_measurement;
    TargetPlanPtr m_plan;
    QString m_imatrixUsed;
    bool m_syncing = false;
};

} // namespace qz::ui

// The "Histograms" tab: the selected tensor's original vs dequantized values, its error
// (dequantized − original), and the whole model's weights before/after. By default every plot spans
// the 0.1 % .. 99.9 % percentiles of its data (values beyond: the overflow bars); the model plot's
// range can also be the first notebook's (−2, 2) with 150 bins, or a custom one. Controls for bins,
// range and log scale; it emits requests and the owner recomputes in the background (the tab never
// runs jobs itself).
#pragma once

#include <QWidget>

#include "jobs/quantize_job.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QPushButton;
class QSpinBox;

namespace qz::ui {

class HistogramPlot;

class HistogramsTab : public QWidget {
    Q_OBJECT
public:
    explicit HistogramsTab(QWidget* parent = nullptr);

    // With a spec of a code-book method (NF4/FP4), the tensor plot also shows the 16 code values
    // scaled by the tensor's max|x| as vertical lines.
    void showTensor(const qz::TensorQuantResult& r, const QString& methodText,
                    const qz::QuantSpec* spec = nullptr);
    void clearTensor(const QString& message = QString());
    void showModel(const qz::Histogram& original, const qz::Histogram& dequantized, const QString& methodText);
    void clearModel(const QString& message = QString());
    // The whole model's original weights alone (before any run), counted right after opening.
    void showModelOriginal(const qz::Histogram& original, const QString& caption);
    QString tensorName() const { return m_tensorName; }

    int tensorBins() const;
    void setTensorBins(int bins);
    qz::HistogramSpec modelHistogramSpec() const;
    void setModelHistogramSpec(const qz::HistogramSpec& spec);

    HistogramPlot* tensorPlot() const { return m_tensorPlot; }
    HistogramPlot* errorPlot() const { return m_errorPlot; }
    HistogramPlot* modelPlot() const { return m_modelPlot; }

    // The model plot's range choices (the combo's order).
    enum RangeChoice { RobustRange, NotebookRange, CustomRange };
    RangeChoice rangeChoice() const;
    void setRangeChoice(RangeChoice c);
    void setLogScale(bool on);

signals:
    void tensorBinsChanged(int bins);
    void modelHistogramRequested(const qz::HistogramSpec& spec);

private:
    HistogramPlot* m_tensorPlot;
    HistogramPlot* m_errorPlot;
    HistogramPlot* m_modelPlot;
    QSpinBox* m_tensorBins;
    QSpinBox* m_modelBins;
    QComboBox* m_range;
    QDoubleSpinBox* m_lo;
    QDoubleSpinBox* m_hi;
    QPushButton* m_applyModel;
    QCheckBox* m_log;
    QString m_tensorName;
};

}  // namespace qz::ui

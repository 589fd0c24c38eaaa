#include "histograms_tab.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "histogram_plot.h"
#include "qt_types.h"

namespace qz::ui {

HistogramsTab::HistogramsTab(QWidget* parent) : QWidget(parent) {
    m_tensorPlot = new HistogramPlot(this);
    m_tensorPlot->setObjectName(QStringLiteral("tensorPlot"));
    m_tensorPlot->setAxisLabels(tr("weight value"), tr("count"));
    m_errorPlot = new HistogramPlot(this);
    m_errorPlot->setObjectName(QStringLiteral("errorPlot"));
    m_errorPlot->setAxisLabels(tr("dequantized − original"), tr("count"));
    m_modelPlot = new HistogramPlot(this);
    m_modelPlot->setObjectName(QStringLiteral("modelPlot"));
    m_modelPlot->setAxisLabels(tr("weight value"), tr("count"));

    m_tensorBins = new QSpinBox(this);
    m_tensorBins->setRange(10, 2000);
    m_tensorBins->setValue(150);
    m_tensorBins->setToolTip(tr("Bins of the tensor plots (range: the tensor's 0.1 % .. 99.9 % "
                                "percentiles)"));
    m_modelBins = new QSpinBox(this);
    m_modelBins->setRange(10, 5000);
    m_modelBins->setValue(150);
    m_range = new QComboBox(this);
    m_range->setObjectName(QStringLiteral("modelRange"));
    m_range->addItem(tr("0.1 % … 99.9 % of the weights"));
    m_range->addItem(tr("Notebook: (−2, 2), 150 bins"));
    m_range->addItem(tr("Custom"));
    m_range->setToolTip(
        tr("Range of the whole-model plot; values beyond it are counted in the overflow bars"));
    m_lo = new QDoubleSpinBox(this);
    m_hi = new QDoubleSpinBox(this);
    for (QDoubleSpinBox* s : {m_lo, m_hi}) {
        s->setRange(-1e6, 1e6);
        s->setDecimals(3);
        s->setSingleStep(0.5);
    }
    m_lo->setValue(-2.0);
    m_hi->setValue(2.0);
    m_applyModel = new QPushButton(tr("Apply"), this);
    m_applyModel->setToolTip(tr("Recompute the whole-model histograms with these bins and range"));
    m_log = new QCheckBox(tr("Log counts"), this);

    // Two rows (the tensor plots', then the whole model's), so the tab fits beside the tree and the method
    // panel on a 1600-pixel-wide screen.
    auto* tensorControls = new QHBoxLayout;
    tensorControls->addWidget(new QLabel(tr("Tensor bins"), this));
    tensorControls->addWidget(m_tensorBins);
    tensorControls->addSpacing(16);
    tensorControls->addWidget(m_log);
    tensorControls->addStretch(1);
    auto* controls = new QHBoxLayout;
    controls->addWidget(new QLabel(tr("Model bins"), this));
    controls->addWidget(m_modelBins);
    controls->addWidget(new QLabel(tr("range"), this));
    controls->addWidget(m_range);
    controls->addWidget(m_lo);
    controls->addWidget(new QLabel(QStringLiteral("…"), this));
    controls->addWidget(m_hi);
    controls->addWidget(m_applyModel);
    controls->addStretch(1);

    auto* top = new QSplitter(Qt::Horizontal, this);
    top->addWidget(m_tensorPlot);
    top->addWidget(m_errorPlot);
    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(top);
    split->addWidget(m_modelPlot);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(tensorControls);
    layout->addLayout(controls);
    layout->addWidget(split, 1);

    connect(m_tensorBins, &QSpinBox::editingFinished, this, [this] { emit tensorBinsChanged(tensorBins()); });
    connect(m_applyModel, &QPushButton::clicked, this, [this] {
        if (m_hi->value() <= m_lo->value()) m_hi->setValue(m_lo->value() + 1.0);
        emit modelHistogramRequested(modelHistogramSpec());
    });
    connect(m_log, &QCheckBox::toggled, this, [this](bool on) {
        for (HistogramPlot* p : {m_tensorPlot, m_errorPlot, m_modelPlot}) p->setLogScale(on);
    });
    connect(m_range, &QComboBox::currentIndexChanged, this, [this](int i) {
        if (i == NotebookRange) {
            m_modelBins->setValue(150);
            m_lo->setValue(-2.0);
            m_hi->setValue(2.0);
        }
        m_lo->setEnabled(i == CustomRange);
        m_hi->setEnabled(i == CustomRange);
    });
    m_lo->setEnabled(false);
    m_hi->setEnabled(false);
    clearTensor();
    clearModel();
}

int HistogramsTab::tensorBins() const { return m_tensorBins->value(); }

void HistogramsTab::setTensorBins(int bins) { m_tensorBins->setValue(bins); }

qz::HistogramSpec HistogramsTab::modelHistogramSpec() const {
    qz::HistogramSpec s;
    s.bins = m_modelBins->value();
    s.mode = rangeChoice() == RobustRange ? qz::HistogramRangeMode::Robust : qz::HistogramRangeMode::Fixed;
    s.lo = m_lo->value();
    s.hi = m_hi->value();
    return s;
}

void HistogramsTab::setModelHistogramSpec(const qz::HistogramSpec& spec) {
    const qz::HistogramSpec nb = qz::HistogramSpec::notebookPreset();
    if (spec.mode == qz::HistogramRangeMode::Robust)
        setRangeChoice(RobustRange);
    else if (spec.bins == nb.bins && spec.lo == nb.lo && spec.hi == nb.hi)
        setRangeChoice(NotebookRange);
    else
        setRangeChoice(CustomRange);
    m_modelBins->setValue(spec.bins);
    m_lo->setValue(spec.lo);
    m_hi->setValue(spec.hi);
}

HistogramsTab::RangeChoice HistogramsTab::rangeChoice() const {
    return static_cast<RangeChoice>(std::clamp(m_range->currentIndex(), 0, int(CustomRange)));
}

void HistogramsTab::setRangeChoice(RangeChoice c) { m_range->setCurrentIndex(int(c)); }

void HistogramsTab::setLogScale(bool on) { m_log->setChecked(on); }

void HistogramsTab::showTensor(const qz::TensorQuantResult& r, const QString& methodText,
                               const qz::QuantSpec* spec) {
    m_tensorName = toQ(r.name);
    const QString shown = toDisplay(r.name);  // titles: control characters escaped
    m_tensorPlot->setTitle(shown + QLatin1Char('\n') + methodText);
    m_tensorPlot->setSeries({{tr("Original weights"), r.histOriginal, HistogramPlot::originalColor()},
                             {tr("Dequantized"), r.histDequantized, HistogramPlot::quantizedColor()}});
    QVector<double> codes;
    if (spec && qz::isBnbFourBit(spec->method)) {
        // Per-tensor view of the code book: the values times the tensor's max|x| (each block uses
        // its own absmax, at most this one), in weight units.
        const double absmax = std::max(std::fabs(double(r.range.min)), std::fabs(double(r.range.max)));
        for (float c : qz::codeValues(*spec)) codes.append(double(c) * absmax);
    }
    m_tensorPlot->setMarkers(codes, codes.isEmpty() ? QString()
                                                    : tr("%1 code values × max|x|")
                                                          .arg(toQ(std::string(qz::methodName(spec->method)))
                                                                   .toUpper()));
    m_errorPlot->setTitle(tr("Error of %1\n%2").arg(shown, methodText));
    m_errorPlot->setSeries({{tr("dequantized − original"), r.histError, HistogramPlot::errorColor()}});
}

void HistogramsTab::clearTensor(const QString& message) {
    m_tensorName.clear();
    m_tensorPlot->clear(message.isEmpty() ? tr("Select a tensor") : message);
    m_errorPlot->clear(tr("Error histogram"));
}

void HistogramsTab::showModel(const qz::Histogram& original, const qz::Histogram& dequantized,
                              const QString& methodText) {
    m_modelPlot->setTitle(tr("All selected weights — ") + methodText);
    m_modelPlot->setSeries({{tr("Original weights"), original, HistogramPlot::originalColor()},
                            {tr("Dequantized"), dequantized, HistogramPlot::quantizedColor()}});
}

void HistogramsTab::showModelOriginal(const qz::Histogram& original, const QString& caption) {
    m_modelPlot->setTitle(tr("All 2-D weights — ") + caption);
    m_modelPlot->setSeries({{tr("Original weights"), original, HistogramPlot::originalColor()}});
}

void HistogramsTab::clearModel(const QString& message) {
    m_modelPlot->clear(message.isEmpty() ? tr("Whole model: run a quantization") : message);
}

}  // namespace qz::ui

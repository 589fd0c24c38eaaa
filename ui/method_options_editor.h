// Base class of method-specific option editors (block size, double quantization, outlier threshold,
// calibration file, ...). A MethodDescriptor may carry a factory for one; the method panel shows it
// under the common choices while that method is selected and lets it write its fields into the
// QuantSpec, so a new method brings its own options without changes to the panel.
#pragma once

#include <QWidget>

#include "quant/simple_quant.h"

namespace qz::ui {

class MethodOptionsEditor : public QWidget {
    Q_OBJECT
public:
    using QWidget::QWidget;

    virtual void applyTo(qz::QuantSpec& spec) const = 0;  // write this method's options into spec
    virtual void loadFrom(const qz::QuantSpec& spec) = 0;  // show the options of spec
    virtual QString validationError() const { return {}; }  // empty when the options can run

signals:
    void changed();
};

}  // namespace qz::ui

// Option editors of the bitsandbytes methods (quant/bnb.h, quant/llm_int8.h), registered through
// MethodDescriptor::createOptions and shown by the method panel while the method is selected:
//   FourBitOptionsEditor (NF4 / FP4): block size 32/64/128/256 and double quantization of the scales.
//   LlmInt8OptionsEditor (LLM.int8()): outlier threshold (default 6.0) and the calibration text — the
//     bundled Shakespeare text or a file the user chooses — with context size and number of chunks.
// Each writes only its own fields into the QuantSpec the panel hands to the quantize job.
#pragma once

#include "method_options_editor.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QSpinBox;

namespace qz::ui {

class FourBitOptionsEditor : public MethodOptionsEditor {
    Q_OBJECT
public:
    explicit FourBitOptionsEditor(QWidget* parent = nullptr);

    void applyTo(qz::QuantSpec& spec) const override;
    void loadFrom(const qz::QuantSpec& spec) override;

    QComboBox* blockSizeCombo() const { return m_blockSize; }
    QCheckBox* doubleQuantCheck() const { return m_doubleQuant; }

private:
    QComboBox* m_blockSize;
    QCheckBox* m_doubleQuant;
};

class LlmInt8OptionsEditor : public MethodOptionsEditor {
    Q_OBJECT
public:
    explicit LlmInt8OptionsEditor(QWidget* parent = nullptr);

    void applyTo(qz::QuantSpec& spec) const override;
    void loadFrom(const qz::QuantSpec& spec) override;
    QString validationError() const override;

    static QString bundledText();          // resources/texts/shakespeare-valid.txt
    void setCalibrationPath(const QString& path);  // selects (adding if needed) a text file
    QString calibrationPath() const;

    QDoubleSpinBox* thresholdSpin() const { return m_threshold; }
    QComboBox* textCombo() const { return m_text; }
    QSpinBox* contextSpin() const { return m_ctx; }
    QSpinBox* chunksSpin() const { return m_chunks; }

private:
    void onTextActivated(int index);

    QDoubleSpinBox* m_threshold;
    QComboBox* m_text;
    QSpinBox* m_ctx;
    QSpinBox* m_chunks;
    int m_lastIndex = 0;
};

}  // namespace qz::ui

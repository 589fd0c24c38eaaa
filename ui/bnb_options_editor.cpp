#include "bnb_options_editor.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QSpinBox>

#include "app_options.h"
#include "qt_types.h"

namespace qz::ui {

namespace {
constexpr int kChooseFile = -1;  // item data of "Choose file…" (the text items hold a path string)
bool isChooseFile(const QVariant& v) { return v.typeId() == QMetaType::Int && v.toInt() == kChooseFile; }
}  // namespace

FourBitOptionsEditor::FourBitOptionsEditor(QWidget* parent) : MethodOptionsEditor(parent) {
    setObjectName(QStringLiteral("fourBitOptions"));
    m_blockSize = new QComboBox(this);
    m_blockSize->setObjectName(QStringLiteral("blockSizeCombo"));
    for (int b : {32, 64, 128, 256}) m_blockSize->addItem(QString::number(b), b);
    m_blockSize->setCurrentIndex(1);  // 64, bitsandbytes' default
    m_blockSize->setToolTip(tr("Weights per absmax scale (over the flattened tensor)"));
    m_doubleQuant = new QCheckBox(tr("Double quantization"), this);
    m_doubleQuant->setObjectName(QStringLiteral("doubleQuantCheck"));
    m_doubleQuant->setToolTip(tr("Store the block scales as 8-bit codes (blocks of 256) instead of fp32"));
    auto* form = new QFormLayout(this);
    form->setContentsMargins(0, 0, 0, 0);
    form->addRow(tr("Block size"), m_blockSize);
    form->addRow(m_doubleQuant);
    connect(m_blockSize, &QComboBox::currentIndexChanged, this, &MethodOptionsEditor::changed);
    connect(m_doubleQuant, &QCheckBox::toggled, this, &MethodOptionsEditor::changed);
}

void FourBitOptionsEditor::applyTo(qz::QuantSpec& spec) const {
    spec.blockSize = m_blockSize->currentData().toInt();
    spec.doubleQuant = m_doubleQuant->isChecked();
}

void FourBitOptionsEditor::loadFrom(const qz::QuantSpec& spec) {
    int i = m_blockSize->findData(spec.blockSize);
    if (i < 0) {  // a block size from the command line or settings that the combo does not list
        m_blockSize->addItem(QString::number(spec.blockSize), spec.blockSize);
        i = m_blockSize->count() - 1;
    }
    m_blockSize->setCurrentIndex(i);
    m_doubleQuant->setChecked(spec.doubleQuant);
}

LlmInt8OptionsEditor::LlmInt8OptionsEditor(QWidget* parent) : MethodOptionsEditor(parent) {
    setObjectName(QStringLiteral("llmInt8Options"));
    m_threshold = new QDoubleSpinBox(this);
    m_threshold->setObjectName(QStringLiteral("thresholdSpin"));
    m_threshold->setRange(0.1, 1000.0);
    m_threshold->setDecimals(2);
    m_threshold->setSingleStep(0.5);
    m_threshold->setValue(6.0);
    m_threshold->setToolTip(tr("An input feature is an outlier (its weight column stays fp16) when its "
                               "calibration activations reach this magnitude"));
    m_text = new QComboBox(this);
    m_text->setObjectName(QStringLiteral("calibrationCombo"));
    m_text->addItem(tr("Shakespeare (bundled)"), bundledText());
    m_text->addItem(tr("Choose file…"), kChooseFile);
    m_text->setToolTip(bundledText());
    m_ctx = new QSpinBox(this);
    m_ctx->setObjectName(QStringLiteral("calibCtxSpin"));
    m_ctx->setRange(8, 131072);
    m_ctx->setValue(512);
    m_ctx->setSuffix(tr(" tokens"));
    m_ctx->setToolTip(tr("Tokens per calibration chunk (clamped to the model's context)"));
    m_chunks = new QSpinBox(this);
    m_chunks->setObjectName(QStringLiteral("calibChunksSpin"));
    m_chunks->setRange(1, 100000);
    m_chunks->setValue(16);
    m_chunks->setToolTip(tr("At most this many chunks of the text are run"));
    auto* form = new QFormLayout(this);
    form->setContentsMargins(0, 0, 0, 0);
    form->addRow(tr("Outlier threshold"), m_threshold);
    form->addRow(tr("Calibration text"), m_text);
    form->addRow(tr("Context"), m_ctx);
    form->addRow(tr("Chunks"), m_chunks);
    connect(m_threshold, &QDoubleSpinBox::valueChanged, this, &MethodOptionsEditor::changed);
    connect(m_ctx, &QSpinBox::valueChanged, this, &MethodOptionsEditor::changed);
    connect(m_chunks, &QSpinBox::valueChanged, this, &MethodOptionsEditor::changed);
    connect(m_text, &QComboBox::activated, this, &LlmInt8OptionsEditor::onTextActivated);
    connect(m_text, &QComboBox::currentIndexChanged, this, [this] {
        m_text->setToolTip(calibrationPath());
        emit changed();
    });
}

QString LlmInt8OptionsEditor::bundledText() {
    return sampleTextPath();
}

void LlmInt8OptionsEditor::onTextActivated(int index) {
    if (!isChooseFile(m_text->itemData(index))) {
        m_lastIndex = index;
        return;
    }
    const QString path = QFileDialog::getOpenFileName(this, tr("Calibration text"), QString(),
                                                      tr("Text files (*.txt);;All files (*)"));
    if (path.isEmpty()) {
        m_text->setCurrentIndex(m_lastIndex);
        return;
    }
    setCalibrationPath(path);
}

void LlmInt8OptionsEditor::setCalibrationPath(const QString& path) {
    int i = m_text->findData(path);
    if (i < 0) {
        i = m_text->count() - 1;  // before "Choose file…"
        m_text->insertItem(i, QFileInfo(path).fileName(), path);
    }
    m_lastIndex = i;
    m_text->setCurrentIndex(i);
}

QString LlmInt8OptionsEditor::calibrationPath() const {
    const QVariant d = m_text->currentData();
    return isChooseFile(d) ? QString() : d.toString();
}

void LlmInt8OptionsEditor::applyTo(qz::QuantSpec& spec) const {
    spec.threshold = static_cast<float>(m_threshold->value());
    spec.calibrationPath = toStd(calibrationPath());
    spec.calibCtx = m_ctx->value();
    spec.calibChunks = m_chunks->value();
}

void LlmInt8OptionsEditor::loadFrom(const qz::QuantSpec& spec) {
    m_threshold->setValue(spec.threshold);
    if (!spec.calibrationPath.empty()) setCalibrationPath(toQ(spec.calibrationPath));
    m_ctx->setValue(spec.calibCtx);
    m_chunks->setValue(spec.calibChunks);
}

QString LlmInt8OptionsEditor::validationError() const {
    const QString path = calibrationPath();
    if (path.isEmpty()) return tr("Choose a calibration text.");
    const QFileInfo fi(path);
    if (!fi.isFile() || !fi.isReadable()) return tr("Calibration text not readable: %1").arg(path);
    return {};
}

}  // namespace qz::ui

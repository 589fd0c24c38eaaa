#include "method_registry.h"

#include "bnb_options_editor.h"
#include "qt_types.h"

namespace qz::ui {

MethodRegistry& MethodRegistry::instance() {
    static MethodRegistry registry;
    return registry;
}

MethodRegistry::MethodRegistry() {
    const QList<qz::Granularity> all = {qz::Granularity::Tensor, qz::Granularity::Row, qz::Granularity::Group};
    MethodDescriptor absmax;
    absmax.id = QString::fromUtf8(qz::methodName(qz::QuantMethod::Absmax));
    absmax.displayName = QStringLiteral("Absmax (symmetric)");
    absmax.description = QStringLiteral(
        "Scale by the largest magnitude: s = (2^(b−1) − 1) / max|X|, Xq = round(s·X). "
        "Zero stays exactly zero; outliers stretch the scale.");
    absmax.granularities = all;
    absmax.simple = qz::QuantMethod::Absmax;
    add(absmax);

    MethodDescriptor zp;
    zp.id = QString::fromUtf8(qz::methodName(qz::QuantMethod::ZeroPoint));
    zp.displayName = QStringLiteral("Zero-point (asymmetric)");
    zp.description = QStringLiteral(
        "Map [min, max] onto the full integer range with a zero point: s = (2^b − 1) / (max − min), "
        "zp = round(−s·min − 2^(b−1)). Uses every code for skewed tensors.");
    zp.granularities = all;
    zp.simple = qz::QuantMethod::ZeroPoint;
    add(zp);

    // bitsandbytes (quant/bnb.h, quant/llm_int8.h): the format fixes bits and layout.
    MethodDescriptor nf4;
    nf4.id = QString::fromUtf8(qz::methodName(qz::QuantMethod::Nf4));
    nf4.displayName = QStringLiteral("NF4 (bitsandbytes / QLoRA)");
    nf4.description = QStringLiteral(
        "4-bit NormalFloat: each block of 64 weights is divided by its absmax and rounded to the nearest of "
        "16 quantiles of a normal distribution. Optional double quantization stores the block scales in 8 bits.");
    nf4.minBits = nf4.maxBits = nf4.defaultBits = 4;
    nf4.simple = qz::QuantMethod::Nf4;
    nf4.createOptions = [](QWidget* parent) -> MethodOptionsEditor* {
        return new FourBitOptionsEditor(parent);
    };
    add(nf4);

    MethodDescriptor fp4;
    fp4.id = QString::fromUtf8(qz::methodName(qz::QuantMethod::Fp4));
    fp4.displayName = QStringLiteral("FP4 (bitsandbytes)");
    fp4.description = QStringLiteral(
        "4-bit float (1 sign, 2 exponent, 1 mantissa bit) with block-wise absmax scaling (blocks of 64), "
        "as bitsandbytes' fp4 type. Optional double quantization of the block scales.");
    fp4.minBits = fp4.maxBits = fp4.defaultBits = 4;
    fp4.simple = qz::QuantMethod::Fp4;
    fp4.createOptions = [](QWidget* parent) -> MethodOptionsEditor* {
        return new FourBitOptionsEditor(parent);
    };
    add(fp4);

    MethodDescriptor int8;
    int8.id = QString::fromUtf8(qz::methodName(qz::QuantMethod::LlmInt8));
    int8.displayName = QStringLiteral("LLM.int8() (bitsandbytes)");
    int8.description = QStringLiteral(
        "Per-row absmax INT8, except the input features whose activations on a calibration text reach the "
        "threshold (6.0): those weight columns stay in fp16. Needs a calibration text.");
    int8.minBits = int8.maxBits = int8.defaultBits = 8;
    int8.simple = qz::QuantMethod::LlmInt8;
    int8.createOptions = [](QWidget* parent) -> MethodOptionsEditor* {
        return new LlmInt8OptionsEditor(parent);
    };
    add(int8);
}

void MethodRegistry::add(const MethodDescriptor& d) {
    for (auto& m : m_methods) {
        if (m.id == d.id) {
            m = d;
            return;
        }
    }
    m_methods.append(d);
}

const MethodDescriptor* MethodRegistry::find(const QString& id) const {
    for (const auto& m : m_methods)
        if (m.id.compare(id, Qt::CaseInsensitive) == 0) return &m;
    return nullptr;
}

const MethodDescriptor* MethodRegistry::find(qz::QuantMethod method) const {
    for (const auto& m : m_methods)
        if (m.simple == method) return &m;
    return nullptr;
}

QString granularityLabel(qz::Granularity g) {
    switch (g) {
    case qz::Granularity::Tensor: return QStringLiteral("Per tensor");
    case qz::Granularity::Row: return QStringLiteral("Per row");
    case qz::Granularity::Group: return QStringLiteral("Per group");
    }
    return {};
}

}  // namespace qz::ui

#include "method_registry.h"

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

#include "format.h"

#include <algorithm>
#include <cmath>

namespace qz::ui {

QString formatBytes(uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    if (u == 0) return QStringLiteral("%1 B").arg(bytes);
    return QStringLiteral("%1 %2").arg(v, 0, 'f', 2).arg(QLatin1String(units[u]));
}

QString formatCount(uint64_t n) {
    const char* units[] = {"", " K", " M", " B", " T"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        ++u;
    }
    if (u == 0) return QString::number(n);
    return QStringLiteral("%1%2").arg(v, 0, 'f', v < 10 ? 2 : 1).arg(QLatin1String(units[u]));
}

QString formatEngineering(double v, int precision) {
    if (!std::isfinite(v)) return formatDouble(v);
    if (v == 0) return QStringLiteral("0");
    static const char* prefixes[] = {"p", "n", "µ", "m", "", "k", "M", "G", "T", "P"};
    int exp3 = static_cast<int>(std::floor(std::log10(std::fabs(v)) / 3.0));
    exp3 = std::clamp(exp3, -4, 5);
    const double mant = v / std::pow(10.0, 3 * exp3);
    return QString::number(mant, 'g', precision) + QString::fromUtf8(prefixes[exp3 + 4]);
}

QString formatDouble(double v, int precision) {
    if (std::isnan(v)) return QStringLiteral("—");
    if (std::isinf(v)) return v > 0 ? QStringLiteral("∞") : QStringLiteral("−∞");
    return QString::number(v, 'g', precision);
}

}  // namespace qz::ui

#include "engineering_ticker.h"

#include <cmath>

#include "format.h"

namespace qz::ui {

QString EngineeringTicker::getTickLabel(double tick, const QLocale&, QChar, int) {
    if (std::fabs(tick) < 1e-12) return QStringLiteral("0");
    return formatEngineering(tick, 4);
}

QString EngineeringLogTicker::getTickLabel(double tick, const QLocale&, QChar, int) {
    return formatEngineering(tick, 4);
}

}  // namespace qz::ui

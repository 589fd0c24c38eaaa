// QCustomPlot tickers whose labels use engineering notation (SI prefixes: 1.5k, 20M), the way the
// notebook's histogram count axes read; a linear and a logarithmic variant.
#pragma once

#include <qcustomplot.h>

namespace qz::ui {

class EngineeringTicker : public QCPAxisTicker {
protected:
    QString getTickLabel(double tick, const QLocale& locale, QChar formatChar, int precision) override;
};

class EngineeringLogTicker : public QCPAxisTickerLog {
protected:
    QString getTickLabel(double tick, const QLocale& locale, QChar formatChar, int precision) override;
};

}  // namespace qz::ui

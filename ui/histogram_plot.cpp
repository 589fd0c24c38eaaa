#include "histogram_plot.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QSvgGenerator>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "engineering_ticker.h"
#include "format.h"

namespace qz::ui {

HistogramPlot::HistogramPlot(QWidget* parent) : QWidget(parent) {
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(QStringLiteral("histogramCustomPlot"));
    m_plot->setMinimumSize(240, 160);
    m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    m_plot->setContextMenuPolicy(Qt::CustomContextMenu);
    m_plot->plotLayout()->insertRow(0);
    m_title = new QCPTextElement(m_plot, QString(), QFont(font().family(), 10, QFont::Bold));
    m_plot->plotLayout()->addElement(0, 0, m_title);
    m_plot->yAxis->setTicker(QSharedPointer<EngineeringTicker>::create());
    m_plot->yAxis->setLabel(tr("count"));
    m_plot->legend->setVisible(true);
    m_plot->legend->setBrush(QColor(255, 255, 255, 200));
    m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_plot);
    connect(m_plot, &QCustomPlot::customContextMenuRequested, this, &HistogramPlot::showContextMenu);
    connect(m_plot, &QCustomPlot::mouseDoubleClick, this, [this] { resetView(); });
    rebuildGraphs();  // empty until given series
}

void HistogramPlot::setTitle(const QString& title) {
    m_title->setText(title);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::setAxisLabels(const QString& x, const QString& y) {
    m_plot->xAxis->setLabel(x);
    m_plot->yAxis->setLabel(y);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::setSeries(const QList<HistogramSeries>& series) {
    m_series = series;
    rebuildGraphs();
}

void HistogramPlot::setMarkers(const QVector<double>& xs, const QString& label) {
    for (QCPAbstractItem* item : m_markerItems) m_plot->removeItem(item);
    m_markerItems.clear();
    m_markerXs = xs;
    QPen pen(QColor(44, 160, 44), 1.0, Qt::DashLine);  // green, apart from the series colours
    for (double x : xs) {
        auto* line = new QCPItemStraightLine(m_plot);
        line->setPen(pen);
        line->setSelectable(false);
        line->point1->setCoords(x, 0.0);
        line->point2->setCoords(x, 1.0);
        m_markerItems.append(line);
    }
    if (!xs.isEmpty() && !label.isEmpty()) {
        auto* text = new QCPItemText(m_plot);
        text->setPositionAlignment(Qt::AlignTop | Qt::AlignLeft);
        text->position->setType(QCPItemPosition::ptAxisRectRatio);
        text->position->setCoords(0.01, 0.01);
        text->setText(label);
        text->setColor(pen.color());
        text->setSelectable(false);
        m_markerItems.append(text);
    }
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::clear(const QString& message) {
    setMarkers({});
    m_series.clear();
    rebuildGraphs();
    if (!message.isEmpty()) {
        m_title->setText(message);
        m_plot->replot(QCustomPlot::rpQueuedReplot);
    }
}

void HistogramPlot::rebuildGraphs() {
    m_plot->clearGraphs();
    for (QCPBars* b : m_overflowBars) m_plot->removePlottable(b);
    for (QCPItemText* t : m_overflowLabels) m_plot->removeItem(t);
    m_overflowBars.clear();
    m_overflowLabels.clear();
    m_padLo = m_padHi = 0;
    int slotLo = 0, slotHi = 0;  // overflow bars placed so far on each side
    for (const auto& s : m_series) {
        const auto& h = s.histogram;
        QCPGraph* g = m_plot->addGraph();
        g->setLineStyle(QCPGraph::lsStepCenter);
        g->setPen(QPen(s.color, 1.4));
        QColor fill = s.color;
        fill.setAlpha(70);
        g->setBrush(fill);
        QString name = s.name;
        if (h.below + h.above + h.nonFinite > 0)
            name += tr(" (%1 outside range)").arg(formatEngineering(double(h.below + h.above + h.nonFinite)));
        g->setName(name);
        QVector<double> keys(h.bins()), values(h.bins());
        for (int i = 0; i < h.bins(); ++i) {
            keys[i] = h.binCenter(i);
            const double c = static_cast<double>(h.counts[size_t(i)]);
            values[i] = (m_log && c <= 0) ? std::numeric_limits<double>::quiet_NaN() : c;
        }
        g->setData(keys, values, true);
        if (h.bins() > 0) {
            const double w = h.binWidth();
            if (h.below > 0) addOverflowBar(s.color, h.lo - (++slotLo) * w, w, h.below, tr("below"));
            if (h.above > 0) addOverflowBar(s.color, h.hi + (++slotHi) * w, w, h.above, tr("above"));
            m_padLo = std::max(m_padLo, slotLo ? (slotLo + 0.5) * w : 0.0);
            m_padHi = std::max(m_padHi, slotHi ? (slotHi + 0.5) * w : 0.0);
        }
    }
    m_plot->legend->setVisible(m_legend && !m_series.isEmpty());
    // An empty plot has no scale to show: no ticks, numbers or grid, only its title (what to do next).
    for (QCPAxis* axis : {m_plot->xAxis, m_plot->yAxis}) {
        axis->setTicks(!m_series.isEmpty());
        axis->setTickLabels(!m_series.isEmpty());
        axis->grid()->setVisible(!m_series.isEmpty());
    }
    resetView();
}

void HistogramPlot::addOverflowBar(const QColor& color, double key, double width, uint64_t count,
                                   const QString& side) {
    auto* bars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    bars->setWidth(width * 0.9);
    bars->setPen(QPen(color, 1.0));
    bars->setBrush(QBrush(color, Qt::BDiagPattern));  // hatched: not a bin of the range
    bars->setName(tr("%1 values %2 the range").arg(count).arg(side));
    bars->removeFromLegend();
    bars->setData({key}, {double(count)}, true);
    m_overflowBars.append(bars);
    auto* label = new QCPItemText(m_plot);
    label->setPositionAlignment(Qt::AlignBottom | Qt::AlignHCenter);
    label->position->setCoords(key, double(count));
    label->setText(formatEngineering(double(count)));
    label->setColor(color.darker(140));
    label->setFont(QFont(font().family(), 8));
    label->setSelectable(false);
    label->setClipToAxisRect(false);
    m_overflowLabels.append(label);
}

QStringList HistogramPlot::overflowLabels() const {
    QStringList out;
    for (const QCPItemText* t : m_overflowLabels) out << t->text();
    return out;
}

void HistogramPlot::resetView() {
    double lo = 0, hi = 1, maxCount = 0, minPositive = 0;
    bool first = true;
    for (const auto& s : m_series) {
        const auto& h = s.histogram;
        if (h.bins() == 0) continue;
        lo = first ? h.lo : std::min(lo, h.lo);
        hi = first ? h.hi : std::max(hi, h.hi);
        first = false;
        for (uint64_t c : h.counts) {
            maxCount = std::max(maxCount, double(c));
            if (c > 0 && (minPositive == 0 || double(c) < minPositive)) minPositive = double(c);
        }
        for (uint64_t c : {h.below, h.above}) {  // the overflow bars stay in view
            maxCount = std::max(maxCount, double(c));
            if (c > 0 && (minPositive == 0 || double(c) < minPositive)) minPositive = double(c);
        }
    }
    m_plot->xAxis->setRange(lo - m_padLo, hi + m_padHi);
    if (m_log)
        m_plot->yAxis->setRange(std::max(0.5, minPositive * 0.5), std::max(10.0, maxCount * 2.0));
    else
        m_plot->yAxis->setRange(0, maxCount > 0 ? maxCount * 1.05 : 1.0);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::setLogScale(bool on) {
    if (on == m_log) return;
    m_log = on;
    m_plot->yAxis->setScaleType(on ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (on)
        m_plot->yAxis->setTicker(QSharedPointer<EngineeringLogTicker>::create());
    else
        m_plot->yAxis->setTicker(QSharedPointer<EngineeringTicker>::create());
    rebuildGraphs();
    emit logScaleChanged(on);
}

void HistogramPlot::setLegendVisible(bool on) {
    m_legend = on;
    m_plot->legend->setVisible(on && !m_series.isEmpty());
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

bool HistogramPlot::exportTo(const QString& path, int width, int height, QString* error) {
    const QString suffix = QFileInfo(path).suffix().toLower();
    bool ok = false;
    if (suffix == QLatin1String("png")) {
        ok = m_plot->savePng(path, width, height, 1.0);
    } else if (suffix == QLatin1String("pdf")) {
        ok = m_plot->savePdf(path, width, height);
    } else if (suffix == QLatin1String("svg")) {
        QSvgGenerator gen;
        gen.setFileName(path);
        gen.setSize(QSize(width, height));
        gen.setViewBox(QRect(0, 0, width, height));
        gen.setTitle(m_title->text());
        QCPPainter painter;
        if (painter.begin(&gen)) {
            m_plot->toPainter(&painter, width, height);
            ok = painter.end();
        }
    } else {
        if (error) *error = tr("unknown image format '%1' (use .png, .svg or .pdf)").arg(suffix);
        return false;
    }
    if (!ok) {
        if (error) *error = tr("could not write %1").arg(path);
        return false;
    }
    emit exported(path);
    return true;
}

void HistogramPlot::exportDialog(const QString& suffix) {
    const QString filter = suffix.toUpper() + tr(" files (*.") + suffix + QStringLiteral(")");
    QString path = QFileDialog::getSaveFileName(this, tr("Export plot"), QStringLiteral("histogram.") + suffix,
                                                filter);
    if (path.isEmpty()) return;
    if (QFileInfo(path).suffix().isEmpty()) path += QStringLiteral(".") + suffix;
    QString error;
    if (!exportTo(path, std::max(900, m_plot->width()), std::max(560, m_plot->height()), &error))
        QMessageBox::warning(this, tr("Export failed"), error);
}

void HistogramPlot::showContextMenu(const QPoint& pos) {
    QMenu menu(this);
    menu.addAction(tr("Reset view"), this, [this] { resetView(); });
    QAction* log = menu.addAction(tr("Logarithmic counts"));
    log->setCheckable(true);
    log->setChecked(m_log);
    connect(log, &QAction::toggled, this, &HistogramPlot::setLogScale);
    QAction* legend = menu.addAction(tr("Legend"));
    legend->setCheckable(true);
    legend->setChecked(m_legend);
    connect(legend, &QAction::toggled, this, &HistogramPlot::setLegendVisible);
    menu.addSeparator();
    for (const char* s : {"png", "svg", "pdf"}) {
        const QString suffix = QString::fromLatin1(s);
        menu.addAction(tr("Export %1…").arg(suffix.toUpper()), this, [this, suffix] { exportDialog(suffix); });
    }
    menu.exec(m_plot->mapToGlobal(pos));
}

}  // namespace qz::ui

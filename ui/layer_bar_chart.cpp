#include "layer_bar_chart.h"

#include <QToolTip>
#include <QVBoxLayout>
#include <cmath>
#include <limits>
#include <qcustomplot.h>

#include "model/model.h"

#include "qt_types.h"

namespace qz::ui {

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const QList<QColor> kDefaultColors = {QColor(31, 119, 180), QColor(255, 127, 14), QColor(44, 160, 44),
                                      QColor(148, 103, 189)};
}  // namespace

LayerBarChart::LayerBarChart(QWidget* parent) : QWidget(parent) {
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(QStringLiteral("layerBarChartPlot"));
    m_plot->setMinimumSize(300, 200);
    m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    m_plot->axisRect()->setRangeDrag(Qt::Horizontal);
    m_plot->axisRect()->setRangeZoom(Qt::Horizontal);
    m_plot->plotLayout()->insertRow(0);
    m_title = new QCPTextElement(m_plot, QString(), QFont(font().family(), 10, QFont::Bold));
    m_plot->plotLayout()->addElement(0, 0, m_title);
    m_plot->xAxis->setTickLabelRotation(-60);  // ending at the tick: the last label stays inside the widget
    m_plot->xAxis->setSubTicks(false);
    m_plot->xAxis->grid()->setVisible(false);
    m_plot->legend->setVisible(true);
    m_plot->legend->setBrush(QColor(255, 255, 255, 200));
    m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    m_plot->setMouseTracking(true);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_plot);
    connect(m_plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) { showTip(e->pos()); });
    connect(m_plot, &QCustomPlot::mouseDoubleClick, this, [this] { rebuild(); });
    reset({});
}

void LayerBarChart::setTitle(const QString& title) {
    m_title->setText(title);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void LayerBarChart::setValueLabel(const QString& label) {
    m_plot->yAxis->setLabel(label);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void LayerBarChart::reset(const QStringList& series, const QList<QColor>& colors) {
    for (QCPBars* b : m_bars) m_plot->removePlottable(b);
    m_bars.clear();
    delete m_group;
    m_group = new QCPBarsGroup(m_plot);
    m_group->setSpacingType(QCPBarsGroup::stAbsolute);
    m_group->setSpacing(1);
    for (auto& l : m_lines) {
        m_plot->removeItem(l.line);
        m_plot->removeItem(l.text);
    }
    m_lines.clear();
    m_seriesNames = series;
    m_layers.clear();
    m_index.clear();
    m_values.clear();
    const double width = series.isEmpty() ? 0.8 : 0.8 / series.size();
    for (int i = 0; i < series.size(); ++i) {
        auto* bars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
        bars->setName(series[i]);
        const QColor c = i < colors.size() ? colors[i] : kDefaultColors[i % kDefaultColors.size()];
        bars->setPen(QPen(c.darker(130)));
        bars->setBrush(c);
        bars->setWidth(width);
        bars->setBarsGroup(m_group);
        m_bars.append(bars);
        m_values.append(QVector<double>());
    }
    rebuild();
}

void LayerBarChart::setLayers(const QStringList& layerNames) {
    for (const QString& n : layerNames) {
        if (m_index.contains(n)) continue;
        m_index[n] = m_layers.size();
        m_layers.append(n);
        for (auto& v : m_values) v.append(kNaN);
    }
    rebuild();
}

void LayerBarChart::setValue(int series, const QString& layer, double value) {
    if (series < 0 || series >= m_values.size()) return;
    if (!m_index.contains(layer)) {
        m_index[layer] = m_layers.size();
        m_layers.append(layer);
        for (auto& v : m_values) v.append(kNaN);
    }
    m_values[series][m_index[layer]] = value;
    rebuild();
}

void LayerBarChart::setReferenceLine(const QString& id, double y, const QString& label, const QColor& color,
                                     Qt::Alignment side) {
    auto it = m_lines.find(id);
    if (it == m_lines.end()) {
        Line l{new QCPItemStraightLine(m_plot), new QCPItemText(m_plot), y};
        l.line->setPen(QPen(color, 1.5, Qt::DashLine));
        l.line->setSelectable(false);
        l.text->setColor(color);
        l.text->setSelectable(false);
        l.text->setBrush(QColor(255, 255, 255, 220));  // readable over the bars
        l.text->setPadding(QMargins(3, 1, 3, 1));
        it = m_lines.insert(id, l);
    }
    const bool right = side & Qt::AlignRight;
    it->text->setPositionAlignment(Qt::AlignBottom | (right ? Qt::AlignRight : Qt::AlignLeft));
    it->y = y;
    const bool show = std::isfinite(y);
    it->line->setVisible(show);
    it->text->setVisible(show);
    if (show) {
        it->line->point1->setCoords(0, y);
        it->line->point2->setCoords(1, y);
        it->text->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
        it->text->position->setTypeY(QCPItemPosition::ptPlotCoords);
        it->text->position->setCoords(right ? 0.99 : 0.01, y);
        it->text->setText(label);
    }
    rebuild();
}

double LayerBarChart::value(int series, int layer) const {
    if (series < 0 || series >= m_values.size() || layer < 0 || layer >= m_layers.size()) return kNaN;
    return m_values[series][layer];
}

int LayerBarChart::barCount(int series) const {
    if (series < 0 || series >= m_bars.size()) return 0;
    return m_bars[series]->data()->size();
}

QVector<double> LayerBarChart::barValues(int series) const {
    QVector<double> out;
    if (series < 0 || series >= m_bars.size()) return out;
    for (auto it = m_bars[series]->data()->constBegin(); it != m_bars[series]->data()->constEnd(); ++it)
        out.append(it->value);
    return out;
}

double LayerBarChart::referenceLine(const QString& id) const {
    auto it = m_lines.find(id);
    return it == m_lines.end() ? kNaN : it->y;
}

QString LayerBarChart::shortLabel(const QString& layerName) {
    QString n = layerName;
    if (n.endsWith(QStringLiteral(".weight"))) n.chop(7);
    const int layer = qz::layerIndexOf(n.toStdString());
    QStringList parts = n.split(QLatin1Char('.'));
    QString tail = parts.isEmpty() ? n : parts.last();
    // gpt2's c_proj appears in attn and mlp: keep the parent to tell them apart.
    if (parts.size() >= 2 && tail.startsWith(QStringLiteral("c_"))) tail = parts[parts.size() - 2] + QLatin1Char('.') + tail;
    return toDisplay(layer >= 0 ? QString::number(layer) + QLatin1Char(' ') + tail : tail);
}

void LayerBarChart::rebuild() {
    double ymax = 0;
    for (int s = 0; s < m_bars.size(); ++s) {
        QVector<double> keys, vals;
        for (int i = 0; i < m_layers.size(); ++i) {
            const double v = m_values[s][i];
            if (!std::isfinite(v)) continue;
            keys.append(i);
            vals.append(v);
            ymax = std::max(ymax, v);
        }
        m_bars[s]->setData(keys, vals, true);
    }
    for (const auto& l : m_lines)
        if (std::isfinite(l.y)) ymax = std::max(ymax, l.y);
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    const int step = std::max(1, int(m_layers.size() / 60) + 1);  // at most ~60 labels
    for (int i = 0; i < m_layers.size(); i += step) ticker->addTick(i, shortLabel(m_layers[i]));
    m_plot->xAxis->setTicker(ticker);
    m_plot->xAxis->setRange(-0.6, std::max(1, int(m_layers.size())) - 0.4);
    m_plot->yAxis->setRange(0, ymax > 0 ? ymax * 1.3 : 1.0);  // headroom for the legend and line labels
    m_plot->legend->setVisible(!m_bars.isEmpty());
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void LayerBarChart::showTip(const QPoint& pos) {
    if (m_layers.isEmpty() || !m_plot->axisRect()->rect().contains(pos)) return;
    const int i = qRound(m_plot->xAxis->pixelToCoord(pos.x()));
    if (i < 0 || i >= m_layers.size()) return;
    QString tip = toDisplay(m_layers[i]);
    for (int s = 0; s < m_values.size(); ++s)
        if (std::isfinite(m_values[s][i]))
            tip += QStringLiteral("\n%1: %2").arg(m_seriesNames.value(s)).arg(m_values[s][i], 0, 'g', 5);
    QToolTip::showText(m_plot->mapToGlobal(pos), tip, m_plot);
}

bool LayerBarChart::exportTo(const QString& path, int width, int height) {
    if (path.endsWith(QStringLiteral(".pdf"), Qt::CaseInsensitive)) return m_plot->savePdf(path, width, height);
    return m_plot->savePng(path, width, height);
}

}  // namespace qz::ui

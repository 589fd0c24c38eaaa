// A reusable histogram plot (QCustomPlot): one or more qz::Histogram series overlaid as step lines
// with translucent fill and a legend. It knows nothing about models or jobs — it is given histograms —
// so the main window, the headless report, and later comparison/teaching views all use it.
//
// Each bin is one data point at the bin centre, so a graph holds exactly bins() points whose values
// sum to the in-range count. Values beyond the range (a histogram's below / above) are drawn as a
// hatched overflow bar just outside each edge, one per series, labelled with its count. Counts use
// engineering notation; optional log scale (empty bins are left out there). Zoom with the wheel, pan
// by dragging, double-click to reset. Context menu: reset, log scale, legend, export PNG / SVG / PDF.
#pragma once

#include <QColor>
#include <QList>
#include <QStringList>
#include <QVector>
#include <QWidget>

#include "stats/histogram.h"

class QCustomPlot;
class QCPTextElement;
class QCPAbstractItem;
class QCPBars;
class QCPItemText;

namespace qz::ui {

struct HistogramSeries {
    QString name;
    qz::Histogram histogram;
    QColor color;
};

class HistogramPlot : public QWidget {
    Q_OBJECT
public:
    explicit HistogramPlot(QWidget* parent = nullptr);

    void setTitle(const QString& title);
    void setAxisLabels(const QString& x, const QString& y);
    void setSeries(const QList<HistogramSeries>& series);
    void clear(const QString& message = QString());
    const QList<HistogramSeries>& series() const { return m_series; }

    // Vertical lines at xs (e.g. a code book's values in weight units) over the histograms, with a
    // label in the plot's corner; an empty xs removes them. clear() removes them too.
    void setMarkers(const QVector<double>& xs, const QString& label = QString());
    const QVector<double>& markers() const { return m_markerXs; }

    // The overflow bars now shown (below and above the range, all series) and their count labels.
    const QList<QCPBars*>& overflowBars() const { return m_overflowBars; }
    QStringList overflowLabels() const;

    void setLogScale(bool on);
    bool logScale() const { return m_log; }
    void setLegendVisible(bool on);
    void resetView();

    // Writes the plot to path; the format follows the suffix (.png, .svg, .pdf).
    bool exportTo(const QString& path, int width = 900, int height = 560, QString* error = nullptr);
    QCustomPlot* customPlot() const { return m_plot; }

    static QColor originalColor() { return QColor(31, 119, 180); }     // notebook blue
    static QColor quantizedColor() { return QColor(255, 127, 14); }    // notebook orange
    static QColor errorColor() { return QColor(214, 39, 40); }

signals:
    void exported(const QString& path);
    void logScaleChanged(bool on);

private:
    void rebuildGraphs();
    void addOverflowBar(const QColor& color, double key, double width, uint64_t count, const QString& side);
    void showContextMenu(const QPoint& pos);
    void exportDialog(const QString& suffix);

    QCustomPlot* m_plot;
    QCPTextElement* m_title;
    QList<HistogramSeries> m_series;
    QVector<double> m_markerXs;
    QList<QCPAbstractItem*> m_markerItems;
    QList<QCPBars*> m_overflowBars;
    QList<QCPItemText*> m_overflowLabels;
    double m_padLo = 0, m_padHi = 0;  // room for the overflow bars beyond the range
    bool m_log = false;
    bool m_legend = true;
};

}  // namespace qz::ui

// A per-layer bar chart (QCustomPlot) that fills as a layer-by-layer job finishes layers: one category
// per linear layer on the x axis (short labels such as "3 q_proj"; the full name in the tooltip), one or
// more bar series side by side (e.g. GPTQ's relative output error next to the RTN baseline's, or the
// bits per weight EXL2 chose), and optional labelled horizontal reference lines (e.g. the target and the
// achieved bits per weight). Layers may be declared up front (setLayers: bars appear in their slots) or
// added as reports arrive (setValue with a new name appends a category).
// The chart only shows numbers it is given: the calibrated export pages feed it the core's LayerReports.
#pragma once

#include <QColor>
#include <QMap>
#include <QStringList>
#include <QVector>
#include <QWidget>

class QCustomPlot;
class QCPBars;
class QCPBarsGroup;
class QCPItemStraightLine;
class QCPItemText;
class QCPTextElement;

namespace qz::ui {

class LayerBarChart : public QWidget {
    Q_OBJECT
public:
    explicit LayerBarChart(QWidget* parent = nullptr);

    void setTitle(const QString& title);
    void setValueLabel(const QString& label);
    // Removes every layer, bar and line; `series` names the bar series (in legend order).
    void reset(const QStringList& series, const QList<QColor>& colors = {});
    void setLayers(const QStringList& layerNames);
    // Sets one bar (appending the layer if it is new). NaN removes the bar.
    void setValue(int series, const QString& layer, double value);
    // A horizontal line at y with a label at the left or right end (id identifies it for later updates);
    // NaN hides it. Two lines close together (a target and the achieved value) keep their labels apart
    // by putting them at opposite ends.
    void setReferenceLine(const QString& id, double y, const QString& label, const QColor& color,
                          Qt::Alignment side = Qt::AlignLeft);

    // For tests and reports.
    int layerCount() const { return m_layers.size(); }
    int seriesCount() const { return m_values.size(); }
    QStringList layers() const { return m_layers; }
    double value(int series, int layer) const;               // NaN if unset
    int barCount(int series) const;                          // bars that have a value
    QVector<double> barValues(int series) const;             // what the QCPBars holds (data order)
    double referenceLine(const QString& id) const;           // NaN if absent
    QCustomPlot* customPlot() const { return m_plot; }
    bool exportTo(const QString& path, int width = 1000, int height = 520);

    static QString shortLabel(const QString& layerName);

private:
    void rebuild();
    void showTip(const QPoint& pos);

    QCustomPlot* m_plot;
    QCPTextElement* m_title;
    QCPBarsGroup* m_group = nullptr;
    QList<QCPBars*> m_bars;
    QStringList m_seriesNames;
    QStringList m_layers;
    QMap<QString, int> m_index;
    QList<QVector<double>> m_values;   // [series][layer]
    struct Line { QCPItemStraightLine* line; QCPItemText* text; double y; };
    QMap<QString, Line> m_lines;
};

}  // namespace qz::ui

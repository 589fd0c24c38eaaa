// One tensor under several ggml types side by side: a grid of histogram plots with shared axes
// (the original in every plot, the type's dequantized values over it) and a table of the error
// figures. Computed on a worker (qz::compareTensorTypes); only the latest request is shown.
#pragma once

#include <QList>
#include <QThreadPool>
#include <QWidget>
#include <atomic>

#include "jobs/type_compare.h"
#include "qt_types.h"

class QGridLayout;
class QLabel;
class QTableWidget;
class QListWidget;

namespace qz::ui {

class HistogramPlot;

class TypeCompareView : public QWidget {
    Q_OBJECT
public:
    explicit TypeCompareView(QWidget* parent = nullptr);
    ~TypeCompareView() override;

    void setModel(ModelPtr model);
    // Shows `tensorName` (its name in the model file) under the checked types.
    void showTensor(const QString& tensorName);
    const QList<HistogramPlot*>& plots() const { return m_plots; }
    QTableWidget* table() const { return m_table; }

signals:
    void ready();  // a comparison was drawn

private:
    void recompute();
    void display(const qz::TypeComparison& c);

    ModelPtr m_model;
    QString m_tensor;
    QLabel* m_title;
    QListWidget* m_types;
    QGridLayout* m_grid;
    QTableWidget* m_table;
    QList<HistogramPlot*> m_plots;
    QThreadPool m_pool;
    std::atomic<quint64> m_request{0};
};

}  // namespace qz::ui

// The "Tensors table" tab: the run summary and a sortable table of per-tensor results. Clicking a
// row emits tensorActivated(name) so the plots follow.
#pragma once

#include <QWidget>

#include "qt_types.h"

class QSortFilterProxyModel;
class QTableView;

namespace qz::ui {

class ResultSummary;
class TensorTableModel;

class TensorTable : public QWidget {
    Q_OBJECT
public:
    explicit TensorTable(QWidget* parent = nullptr);

    TensorTableModel* model() const { return m_model; }
    QTableView* view() const { return m_view; }
    ResultSummary* summary() const { return m_summary; }
    void selectTensor(const QString& name);

signals:
    void tensorActivated(const QString& name);

private:
    TensorTableModel* m_model;
    QSortFilterProxyModel* m_proxy;
    QTableView* m_view;
    ResultSummary* m_summary;
};

}  // namespace qz::ui

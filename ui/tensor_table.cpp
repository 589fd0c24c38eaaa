#include "tensor_table.h"

#include <QHeaderView>
#include <QItemSelectionModel>
#include <QSortFilterProxyModel>
#include <QTableView>
#include <QVBoxLayout>

#include "result_summary.h"
#include "tensor_table_model.h"

namespace qz::ui {

TensorTable::TensorTable(QWidget* parent) : QWidget(parent) {
    m_model = new TensorTableModel(this);
    m_proxy = new QSortFilterProxyModel(this);
    m_proxy->setSourceModel(m_model);
    m_proxy->setSortRole(TensorTableModel::SortRole);
    m_view = new QTableView(this);
    m_view->setObjectName(QStringLiteral("tensorTableView"));
    m_view->setModel(m_proxy);
    m_view->setSortingEnabled(true);
    m_view->sortByColumn(TensorTableModel::Name, Qt::AscendingOrder);
    m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_view->setSelectionMode(QAbstractItemView::SingleSelection);
    m_view->setAlternatingRowColors(true);
    m_view->verticalHeader()->setVisible(false);
    m_view->verticalHeader()->setDefaultSectionSize(m_view->fontMetrics().height() + 6);
    m_view->horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
    m_view->horizontalHeader()->resizeSection(TensorTableModel::Name, 280);
    m_summary = new ResultSummary(this);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_summary);
    layout->addWidget(m_view, 1);
    connect(m_view->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
            [this](const QModelIndex& current) {
                if (!current.isValid()) return;
                const QModelIndex src = m_proxy->mapToSource(current);
                emit tensorActivated(toQ(m_model->result(src.row()).name));  // the name, not its shown form
            });
}

void TensorTable::selectTensor(const QString& name) {
    for (int r = 0; r < m_model->rowCount(); ++r) {
        const QModelIndex src = m_model->index(r, TensorTableModel::Name);
        if (toQ(m_model->result(r).name) != name) continue;
        const QModelIndex idx = m_proxy->mapFromSource(src);
        if (m_view->currentIndex().row() == idx.row()) return;
        QSignalBlocker block(m_view->selectionModel());
        m_view->selectionModel()->setCurrentIndex(
            idx, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
        m_view->scrollTo(idx);
        return;
    }
}

}  // namespace qz::ui

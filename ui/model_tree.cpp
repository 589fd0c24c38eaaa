#include "model_tree.h"

#include <QHeaderView>
#include <algorithm>
#include <map>
#include <set>

#include "format.h"

namespace qz::ui {

namespace {
constexpr int kSortRole = Qt::UserRole;      // numeric sort key
constexpr int kTensorRole = Qt::UserRole + 1;  // tensor index (tensor rows only)

// Sorts numeric columns by value instead of by their formatted text.
class SortItem : public QTreeWidgetItem {
public:
    using QTreeWidgetItem::QTreeWidgetItem;
    bool operator<(const QTreeWidgetItem& other) const override {
        const int col = treeWidget() ? treeWidget()->sortColumn() : 0;
        const QVariant a = data(col, kSortRole), b = other.data(col, kSortRole);
        if (a.isValid() && b.isValid()) return a.toDouble() < b.toDouble();
        return QTreeWidgetItem::operator<(other);
    }
};

void setNumber(QTreeWidgetItem* item, int col, uint64_t v, const QString& text) {
    item->setText(col, text);
    item->setData(col, kSortRole, static_cast<double>(v));
    item->setTextAlignment(col, Qt::AlignRight | Qt::AlignVCenter);
}
}  // namespace

ModelTree::ModelTree(QWidget* parent) : QTreeWidget(parent) {
    setObjectName(QStringLiteral("modelTree"));
    setColumnCount(ColCount);
    setHeaderLabels({tr("Name"), tr("Shape"), tr("DType"), tr("Parameters"), tr("Bytes")});
    setSelectionMode(QAbstractItemView::ExtendedSelection);
    setUniformRowHeights(true);
    setSortingEnabled(true);
    setAlternatingRowColors(true);
    header()->setStretchLastSection(false);
    header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    header()->setSectionResizeMode(ColName, QHeaderView::Interactive);  // long names: scroll, don't squeeze
    header()->setMinimumSectionSize(40);
    connect(this, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
        if (!item || !m_model || !item->data(ColName, kTensorRole).isValid()) return;
        const qulonglong i = item->data(ColName, kTensorRole).toULongLong();
        if (i < m_model->tensors.size()) emit currentTensorChanged(toQ(m_model->tensors[i].name));
    });
    connect(this, &QTreeWidget::itemSelectionChanged, this,
            [this] { emit tensorSelectionChanged(int(selectedTensorNames().size())); });
}

void ModelTree::setModel(ModelPtr model) {
    m_model = std::move(model);
    setSortingEnabled(false);
    clear();
    if (!m_model) {
        setSortingEnabled(true);
        return;
    }
    std::map<int, QTreeWidgetItem*> groups;  // layer -> group (-1 first)
    std::map<int, std::pair<uint64_t, uint64_t>> sums;
    for (size_t i = 0; i < m_model->tensors.size(); ++i) {
        const auto& t = m_model->tensors[i];
        const int layer = qz::layerIndexOf(t.name);
        QTreeWidgetItem*& group = groups[layer];
        if (!group) {
            group = new SortItem(this);
            group->setText(ColName, layer < 0 ? tr("Model (outside layers)") : tr("Layer %1").arg(layer));
            group->setData(ColName, kSortRole, layer);
            group->setFirstColumnSpanned(false);
        }
        auto* item = new SortItem(group);
        item->setText(ColName, toDisplay(t.name));
        item->setData(ColName, kTensorRole, qulonglong(i));
        item->setData(ColName, kSortRole, double(i));  // name column: model order
        item->setToolTip(ColName, toDisplay(t.name));
        item->setText(ColShape, toDisplay(t.shapeString()));
        item->setText(ColDType, QString::fromUtf8(qz::dtypeName(t.dtype)));
        setNumber(item, ColParams, t.numel(), formatCount(t.numel()));
        setNumber(item, ColBytes, t.nbytes, formatBytes(t.nbytes));
        sums[layer].first += t.numel();
        sums[layer].second += t.nbytes;
    }
    for (auto& [layer, group] : groups) {
        setNumber(group, ColParams, sums[layer].first, formatCount(sums[layer].first));
        setNumber(group, ColBytes, sums[layer].second, formatBytes(sums[layer].second));
        group->setText(ColShape, tr("%n tensor(s)", nullptr, group->childCount()));
    }
    setSortingEnabled(true);
    sortByColumn(ColName, Qt::AscendingOrder);
    header()->resizeSection(ColName, std::max(300, sizeHintForColumn(ColName)));
    if (groups.size() <= 3) expandAll();
    else if (groups.count(-1)) groups[-1]->setExpanded(true);
}

QStringList ModelTree::selectedTensorNames() const {
    std::set<qulonglong> indices;
    for (QTreeWidgetItem* item : selectedItems()) {
        if (item->data(ColName, kTensorRole).isValid()) {
            indices.insert(item->data(ColName, kTensorRole).toULongLong());
        } else {  // a layer group stands for all its tensors
            for (int c = 0; c < item->childCount(); ++c)
                indices.insert(item->child(c)->data(ColName, kTensorRole).toULongLong());
        }
    }
    QStringList names;
    if (!m_model) return names;
    for (qulonglong i : indices)
        if (i < m_model->tensors.size()) names << toQ(m_model->tensors[i].name);
    return names;
}

QTreeWidgetItem* ModelTree::itemForTensor(const QString& name) const {
    for (int g = 0; g < topLevelItemCount(); ++g) {
        QTreeWidgetItem* group = topLevelItem(g);
        for (int c = 0; c < group->childCount(); ++c) {
            // By the tensor's own name: the shown text has control characters escaped.
            const QVariant i = group->child(c)->data(ColName, kTensorRole);
            if (m_model && i.isValid() && i.toULongLong() < m_model->tensors.size() &&
                toQ(m_model->tensors[i.toULongLong()].name) == name)
                return group->child(c);
        }
    }
    return nullptr;
}

void ModelTree::selectTensors(const QStringList& names) {
    blockSignals(true);
    clearSelection();
    blockSignals(false);
    for (const auto& n : names)
        if (auto* item = itemForTensor(n)) {
            item->setSelected(true);
            if (item->parent()) item->parent()->setExpanded(true);
        }
    emit tensorSelectionChanged(int(selectedTensorNames().size()));
}

void ModelTree::setCurrentTensor(const QString& name) {
    QTreeWidgetItem* item = itemForTensor(name);
    if (!item) return;
    if (item->parent()) item->parent()->setExpanded(true);
    // Keep the multi-selection: only move the current item.
    setCurrentItem(item, ColName, QItemSelectionModel::NoUpdate);
    scrollToItem(item);
}

int ModelTree::tensorCount() const { return m_model ? int(m_model->tensors.size()) : 0; }

}  // namespace qz::ui

#include "model_tree.h"

#include <QHeaderView>
#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "format.h"
#include "model/tensor_names.h"

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
    m_tensorItems.clear();
    if (!m_model) {
        setSortingEnabled(true);
        return;
    }
    struct Group {
        QTreeWidgetItem* item = nullptr;
        uint64_t params = 0, bytes = 0;
    };
    // Layer -> group (-1 first); within a layer of a mixture-of-experts model, one "Experts" group
    // holding a group per expert (HF checkpoints store each expert's projections separately).
    std::map<int, Group> layers;
    std::map<int, Group> expertsOf;                       // layer -> its "Experts" group
    std::map<std::pair<int, int>, Group> experts;         // (layer, expert) -> group
    auto newGroup = [](QTreeWidgetItem* item, const QString& text, int key) {
        item->setText(ColName, text);
        item->setData(ColName, kSortRole, key);
        return item;
    };
    for (size_t i = 0; i < m_model->tensors.size(); ++i) {
        const auto& t = m_model->tensors[i];
        const int layer = qz::layerIndexOf(t.name);
        const int expert = layer >= 0 ? qz::expertIndexOf(t.name) : -1;
        Group& lg = layers[layer];
        if (!lg.item)
            lg.item = newGroup(new SortItem(this),
                               layer < 0 ? tr("Model (outside layers)") : tr("Layer %1").arg(layer), layer);
        QTreeWidgetItem* parent = lg.item;
        std::vector<Group*> sums{&lg};
        if (expert >= 0) {
            Group& eg = expertsOf[layer];
            // Sorted after the layer's own tensors (whose sort keys are tensor indices).
            if (!eg.item) eg.item = newGroup(new SortItem(lg.item), tr("Experts"), std::numeric_limits<int>::max());
            Group& xg = experts[{layer, expert}];
            if (!xg.item) xg.item = newGroup(new SortItem(eg.item), tr("Expert %1").arg(expert), expert);
            parent = xg.item;
            sums.push_back(&eg);
            sums.push_back(&xg);
        }
        auto* item = new SortItem(parent);
        item->setText(ColName, toDisplay(t.name));
        item->setData(ColName, kTensorRole, qulonglong(i));
        item->setData(ColName, kSortRole, double(i));  // name column: model order
        item->setToolTip(ColName, toDisplay(t.name));
        item->setText(ColShape, toDisplay(t.shapeString()));
        item->setText(ColDType, QString::fromUtf8(qz::dtypeName(t.dtype)));
        setNumber(item, ColParams, t.numel(), formatCount(t.numel()));
        setNumber(item, ColBytes, t.nbytes, formatBytes(t.nbytes));
        m_tensorItems.emplace(toQ(t.name), item);
        for (Group* g : sums) {
            g->params += t.numel();
            g->bytes += t.nbytes;
        }
    }
    auto finish = [](Group& g, const QString& shapeText) {
        setNumber(g.item, ColParams, g.params, formatCount(g.params));
        setNumber(g.item, ColBytes, g.bytes, formatBytes(g.bytes));
        g.item->setText(ColShape, shapeText);
    };
    for (auto& [layer, g] : layers)
        finish(g, tr("%n tensor(s)", nullptr, tensorCountUnder(g.item)));
    for (auto& [layer, g] : expertsOf) {
        g.item->setText(ColName, tr("Experts (%1)").arg(g.item->childCount()));
        finish(g, tr("%n tensor(s)", nullptr, tensorCountUnder(g.item)));
    }
    for (auto& [key, g] : experts) finish(g, tr("%n tensor(s)", nullptr, g.item->childCount()));
    setSortingEnabled(true);
    sortByColumn(ColName, Qt::AscendingOrder);
    header()->resizeSection(ColName, std::max(300, sizeHintForColumn(ColName)));
    if (layers.size() <= 3) {
        for (auto& [layer, g] : layers) g.item->setExpanded(true);
    } else if (layers.count(-1)) {
        layers[-1].item->setExpanded(true);
    }
}

int ModelTree::tensorCountUnder(const QTreeWidgetItem* item) {
    if (item->data(ColName, kTensorRole).isValid()) return 1;
    int n = 0;
    for (int c = 0; c < item->childCount(); ++c) n += tensorCountUnder(item->child(c));
    return n;
}

namespace {
void collectTensorIndices(const QTreeWidgetItem* item, std::set<qulonglong>& out) {
    if (item->data(ModelTree::ColName, kTensorRole).isValid()) {
        out.insert(item->data(ModelTree::ColName, kTensorRole).toULongLong());
        return;
    }
    for (int c = 0; c < item->childCount(); ++c) collectTensorIndices(item->child(c), out);
}

void expandAncestors(QTreeWidgetItem* item) {
    for (QTreeWidgetItem* p = item->parent(); p; p = p->parent()) p->setExpanded(true);
}
}  // namespace

QStringList ModelTree::selectedTensorNames() const {
    std::set<qulonglong> indices;  // a selected group stands for all the tensors under it
    for (QTreeWidgetItem* item : selectedItems()) collectTensorIndices(item, indices);
    QStringList names;
    if (!m_model) return names;
    for (qulonglong i : indices)
        if (i < m_model->tensors.size()) names << toQ(m_model->tensors[i].name);
    return names;
}

QTreeWidgetItem* ModelTree::itemForTensor(const QString& name) const {
    const auto it = m_tensorItems.find(name);  // by the tensor's own name (the shown text is escaped)
    return it == m_tensorItems.end() ? nullptr : it->second;
}

void ModelTree::selectTensors(const QStringList& names) {
    blockSignals(true);
    clearSelection();
    blockSignals(false);
    for (const auto& n : names)
        if (auto* item = itemForTensor(n)) {
            item->setSelected(true);
            expandAncestors(item);
        }
    emit tensorSelectionChanged(int(selectedTensorNames().size()));
}

void ModelTree::setCurrentTensor(const QString& name) {
    QTreeWidgetItem* item = itemForTensor(name);
    if (!item) return;
    expandAncestors(item);
    // Keep the multi-selection: only move the current item.
    setCurrentItem(item, ColName, QItemSelectionModel::NoUpdate);
    scrollToItem(item);
}

int ModelTree::tensorCount() const { return m_model ? int(m_model->tensors.size()) : 0; }

}  // namespace qz::ui

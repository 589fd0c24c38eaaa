// Left panel: the model's tensors as a tree grouped by layer (qz::layerIndexOf); tensors outside the
// numbered layers sit in a first group. In a mixture-of-experts layer stored per expert (Hugging Face
// checkpoints), the experts' tensors sit in an "Experts (N)" group with one group per expert
// (qz::expertIndexOf); GGUF's stacked 3-D expert tensors stay single rows. Columns: name, shape, dtype, parameters, bytes (numeric
// columns sort by value). Multi-selection (a selected group counts as all the tensors under it) feeds
// the "selection in the tree" mode; the current tensor drives the plots.
#pragma once

#include <QTreeWidget>
#include <unordered_map>

#include "qt_types.h"

namespace qz::ui {

class ModelTree : public QTreeWidget {
    Q_OBJECT
public:
    enum Column { ColName, ColShape, ColDType, ColParams, ColBytes, ColCount };

    explicit ModelTree(QWidget* parent = nullptr);

    void setModel(ModelPtr model);  // nullptr clears
    QStringList selectedTensorNames() const;  // in model order
    void selectTensors(const QStringList& names);
    void setCurrentTensor(const QString& name);
    QTreeWidgetItem* itemForTensor(const QString& name) const;
    int tensorCount() const;

signals:
    void currentTensorChanged(const QString& name);
    void tensorSelectionChanged(int count);

public:
    // Tensors under a tree item (1 for a tensor row).
    static int tensorCountUnder(const QTreeWidgetItem* item);

private:
    ModelPtr m_model;
    std::unordered_map<QString, QTreeWidgetItem*> m_tensorItems;  // tensor name -> its row
};

}  // namespace qz::ui

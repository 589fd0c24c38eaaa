// Left panel: the model's tensors as a tree grouped by layer (qz::layerIndexOf); tensors outside the
// numbered layers sit in a first group. Columns: name, shape, dtype, parameters, bytes (numeric
// columns sort by value). Multi-selection (a selected layer group counts as all its tensors) feeds
// the "selection in the tree" mode; the current tensor drives the plots.
#pragma once

#include <QTreeWidget>

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

private:
    ModelPtr m_model;
};

}  // namespace qz::ui

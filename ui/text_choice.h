// The evaluation-text combo box shared by the Evaluate panel and the Compare workspace: its first item is
// the bundled text, its last "Choose a file…", and chosen files sit between them.
#pragma once

#include <QComboBox>
#include <QFileInfo>

namespace qz::ui {

// Selects the file `path` in box, inserting it before the last item the first time; an empty path selects
// the bundled text.
inline void selectTextFile(QComboBox* box, const QString& path) {
    if (path.isEmpty()) {
        box->setCurrentIndex(0);
        return;
    }
    int i = box->findData(path);
    if (i < 0) {
        box->insertItem(box->count() - 1, QFileInfo(path).fileName(), path);
        i = box->count() - 2;
    }
    box->setCurrentIndex(i);
}

}  // namespace qz::ui

// Architecture summary of the open model: name, format, architecture, parameter count, size on
// disk (all files) and the reader's metadata (config.json entries or GGUF key/values).
#pragma once

#include <QTextBrowser>

#include "qt_types.h"

namespace qz::ui {

class ModelSummary : public QTextBrowser {
    Q_OBJECT
public:
    explicit ModelSummary(QWidget* parent = nullptr);
    void setModel(ModelPtr model);  // nullptr shows a hint
    static QString formatName(qz::ModelFormat f);
};

}  // namespace qz::ui

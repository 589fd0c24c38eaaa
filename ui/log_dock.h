// Bottom dock: a timestamped log of what the application did (opened, ran, failed, exported).
#pragma once

#include <QDockWidget>

class QPlainTextEdit;

namespace qz::ui {

class LogDock : public QDockWidget {
    Q_OBJECT
public:
    explicit LogDock(QWidget* parent = nullptr);
    void append(const QString& message);
    void appendError(const QString& message);
    QString text() const;

private:
    QPlainTextEdit* m_text;
};

}  // namespace qz::ui

#include "log_dock.h"

#include <QDateTime>
#include <QPlainTextEdit>

namespace qz::ui {

LogDock::LogDock(QWidget* parent) : QDockWidget(tr("Log"), parent) {
    setObjectName(QStringLiteral("logDock"));
    m_text = new QPlainTextEdit(this);
    m_text->setReadOnly(true);
    m_text->setMaximumBlockCount(5000);
    m_text->setFont(QFont(QStringLiteral("monospace"), 9));
    setWidget(m_text);
}

void LogDock::append(const QString& message) {
    m_text->appendPlainText(QDateTime::currentDateTime().toString(QStringLiteral("HH:mm:ss  ")) + message);
}

void LogDock::appendError(const QString& message) { append(tr("ERROR: ") + message); }

QString LogDock::text() const { return m_text->toPlainText(); }

}  // namespace qz::ui

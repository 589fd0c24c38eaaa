#include "workspace_tabs.h"

namespace qz::ui {

WorkspaceTabs::WorkspaceTabs(QWidget* parent) : QTabWidget(parent) {
    setObjectName(QStringLiteral("workspaceTabs"));
    setDocumentMode(true);
}

void WorkspaceTabs::addWorkspace(const QString& id, const QString& title, QWidget* page, const QIcon& icon) {
    if (QWidget* old = m_pages.value(id)) {  // re-registering an id replaces its page
        removeTab(indexOf(old));
        old->deleteLater();
        m_order.removeAll(id);
    }
    page->setObjectName(id + QStringLiteral("Workspace"));
    m_pages.insert(id, page);
    m_order.append(id);
    addTab(page, icon, title);
}

bool WorkspaceTabs::showWorkspace(const QString& id) {
    QWidget* page = m_pages.value(id);
    if (!page) return false;
    setCurrentWidget(page);
    return true;
}

}  // namespace qz::ui

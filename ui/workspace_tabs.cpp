#include "workspace_tabs.h"

#include <QScrollArea>

namespace qz::ui {

WorkspaceTabs::WorkspaceTabs(QWidget* parent) : QTabWidget(parent) {
    setObjectName(QStringLiteral("workspaceTabs"));
    setDocumentMode(true);
}

void WorkspaceTabs::addWorkspace(const QString& id, const QString& title, QWidget* page, const QIcon& icon) {
    if (QWidget* old = m_pages.value(id)) {  // re-registering an id replaces its page
        QWidget* oldTab = tabFor(old);
        removeTab(indexOf(oldTab));
        oldTab->deleteLater();
        m_order.removeAll(id);
    }
    page->setObjectName(id + QStringLiteral("Workspace"));
    // Each page scrolls when the window is smaller than the page's minimum, so the pages' minimum sizes do
    // not add up to a window larger than the screen.
    auto* scroll = new QScrollArea(this);
    scroll->setObjectName(id + QStringLiteral("WorkspaceScroll"));
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setWidgetResizable(true);
    scroll->setWidget(page);
    m_pages.insert(id, page);
    m_order.append(id);
    addTab(scroll, icon, title);
}

QWidget* WorkspaceTabs::tabFor(QWidget* page) const {
    for (int i = 0; i < count(); ++i)
        if (auto* scroll = qobject_cast<QScrollArea*>(widget(i)); scroll && scroll->widget() == page)
            return scroll;
    return page;
}

bool WorkspaceTabs::showWorkspace(const QString& id) {
    QWidget* page = m_pages.value(id);
    if (!page) return false;
    setCurrentWidget(tabFor(page));
    return true;
}

}  // namespace qz::ui

// The centre tab widget as a registry of workspaces keyed by id ("histograms", "tensors"; later
// "evaluate", "export", "compare"), so new panels plug in without touching the main window layout.
// Each page sits in a scroll area (tabs are the scroll areas; workspace() returns the page itself).
#pragma once

#include <QMap>
#include <QTabWidget>

namespace qz::ui {

class WorkspaceTabs : public QTabWidget {
    Q_OBJECT
public:
    explicit WorkspaceTabs(QWidget* parent = nullptr);

    void addWorkspace(const QString& id, const QString& title, QWidget* page, const QIcon& icon = QIcon());
    QWidget* workspace(const QString& id) const { return m_pages.value(id); }
    bool showWorkspace(const QString& id);
    QStringList ids() const { return m_order; }

private:
    QWidget* tabFor(QWidget* page) const;  // the tab (scroll area) that holds a page

    QMap<QString, QWidget*> m_pages;
    QStringList m_order;
};

}  // namespace qz::ui

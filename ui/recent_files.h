// File › Recent files: the last opened model paths, kept in QSettings ("recentFiles"), shown in a
// menu that rebuilds itself. Emits openRequested(path) when an entry is chosen.
#pragma once

#include <QObject>
#include <QStringList>

class QMenu;

namespace qz::ui {

class RecentFiles : public QObject {
    Q_OBJECT
public:
    static constexpr int MaxEntries = 10;
    RecentFiles(QMenu* menu, QObject* parent = nullptr);

    void add(const QString& path);
    void clear();
    QStringList paths() const;

signals:
    void openRequested(const QString& path);

private:
    void rebuild();
    QMenu* m_menu;
};

}  // namespace qz::ui

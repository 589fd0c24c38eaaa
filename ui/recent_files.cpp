#include "recent_files.h"

#include <QDir>
#include <QFileInfo>
#include <QMenu>
#include <QSettings>

#include "qt_types.h"

namespace qz::ui {

namespace {
const QString kKey = QStringLiteral("recentFiles");
}

RecentFiles::RecentFiles(QMenu* menu, QObject* parent) : QObject(parent), m_menu(menu) { rebuild(); }

QStringList RecentFiles::paths() const { return QSettings().value(kKey).toStringList(); }

void RecentFiles::add(const QString& path) {
    const QString abs = QFileInfo(path).absoluteFilePath();
    QStringList list = paths();
    list.removeAll(abs);
    list.prepend(abs);
    while (list.size() > MaxEntries) list.removeLast();
    QSettings().setValue(kKey, list);
    rebuild();
}

void RecentFiles::clear() {
    QSettings().remove(kKey);
    rebuild();
}

void RecentFiles::rebuild() {
    m_menu->clear();
    const QStringList list = paths();
    int n = 0;
    for (const QString& p : list) {
        const QString label = QStringLiteral("&%1 %2").arg(++n % 10).arg(
            toDisplay(QDir::toNativeSeparators(p))); // a file name may hold control characters
        QAction* a = m_menu->addAction(label, this, [this, p] { emit openRequested(p); });
        a->setEnabled(QFileInfo::exists(p));
    }
    if (list.isEmpty()) m_menu->addAction(tr("(none)"))->setEnabled(false);
    m_menu->addSeparator();
    m_menu->addAction(tr("Clear list"), this, &RecentFiles::clear)->setEnabled(!list.isEmpty());
}

}  // namespace qz::ui

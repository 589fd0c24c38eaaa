// Opens a model (qz::openModel) on a worker thread so the window stays responsive. Only the latest
// request counts: a result that arrives after a newer open() was issued is dropped.
#pragma once

#include <QObject>
#include <QString>
#include <QThreadPool>

#include "qt_types.h"

namespace qz::ui {

class ModelLoader : public QObject {
    Q_OBJECT
public:
    explicit ModelLoader(QObject* parent = nullptr);
    ~ModelLoader() override;

    void open(const QString& path);
    bool isBusy() const { return m_busy; }

signals:
    void started(const QString& path);
    void loaded(qz::ui::ModelPtr model);
    void failed(const QString& path, const QString& message);

private:
    QThreadPool m_pool;
    quint64 m_request = 0;
    bool m_busy = false;
};

}  // namespace qz::ui

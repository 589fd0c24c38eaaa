#include "model_loader.h"

#include <QMetaObject>
#include <exception>

namespace qz::ui {

ModelLoader::ModelLoader(QObject* parent) : QObject(parent) {
    qRegisterMetaType<ModelPtr>();
    m_pool.setMaxThreadCount(1);
}

ModelLoader::~ModelLoader() { m_pool.waitForDone(); }

void ModelLoader::open(const QString& path) {
    const quint64 request = ++m_request;
    m_busy = true;
    emit started(path);
    m_pool.start([this, request, path] {
        ModelPtr model;
        QString error;
        try {
            auto r = qz::openModel(toStd(path));
            if (r)
                model = std::move(r.value());
            else
                error = toDisplay(r.error().message);
        } catch (const std::exception& e) {
            error = path + QStringLiteral(": ") + QString::fromUtf8(e.what());
        } catch (...) {
            error = path + QStringLiteral(": unexpected error while opening");
        }
        QMetaObject::invokeMethod(
            this,
            [this, request, path, model, error] {
                if (request != m_request) return;  // superseded by a newer open()
                m_busy = false;
                if (model)
                    emit loaded(model);
                else
                    emit failed(path, error);
            },
            Qt::QueuedConnection);
    });
}

}  // namespace qz::ui

#include "tensor_analyzer.h"

#include <QMetaObject>
#include <exception>
#include <optional>

namespace qz::ui {

TensorAnalyzer::TensorAnalyzer(QObject* parent) : QObject(parent) {
    qRegisterMetaType<qz::TensorQuantResult>();
    m_pool.setMaxThreadCount(1);
}

TensorAnalyzer::~TensorAnalyzer() { m_pool.waitForDone(); }

void TensorAnalyzer::analyze(ModelPtr model, size_t tensorIndex, const qz::QuantSpec& spec, int bins) {
    if (!model) return;
    const quint64 request = ++m_request;
    m_pool.start([this, request, model, tensorIndex, spec, bins] {
        if (request != m_request) return;  // a newer request is already queued
        std::optional<qz::TensorQuantResult> result;
        QString error;
        const qz::TensorInfo* t =
            tensorIndex < model->tensors.size() ? &model->tensors[tensorIndex] : nullptr;
        if (t && t->shape.size() == 2 && t->numel() > kPreviewValues &&
            spec.method != qz::QuantMethod::LlmInt8) {
            try {
                if (auto p = qz::previewTensor(*model, tensorIndex, spec, bins, kPreviewValues)) {
                    QMetaObject::invokeMethod(
                        this,
                        [this, request, preview = std::move(p.value())] {
                            if (request == m_request) emit previewReady(preview);
                        },
                        Qt::QueuedConnection);
                }
            } catch (const std::exception&) {
                // the full analysis below reports the problem
            }
            if (request != m_request) return; // superseded while previewing
        }
        try {
            auto r = qz::analyzeTensor(*model, tensorIndex, spec, bins);
            if (r)
                result = std::move(r.value());
            else
                error = toDisplay(r.error().message);
        } catch (const std::exception& e) {
            error = QStringLiteral("analysis failed: ") + QString::fromUtf8(e.what());
        }
        QMetaObject::invokeMethod(
            this,
            [this, request, result = std::move(result), error] {
                if (request != m_request) return;
                if (result)
                    emit ready(*result);
                else
                    emit failed(error);
            },
            Qt::QueuedConnection);
    });
}

}  // namespace qz::ui

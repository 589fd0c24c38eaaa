#include "quantize_runner.h"

#include <QMetaObject>
#include <chrono>
#include <exception>

namespace qz::ui {

QuantizeRunner::QuantizeRunner(QObject* parent) : QObject(parent) {
    qRegisterMetaType<ResultPtr>();
    qRegisterMetaType<qz::TensorQuantResult>();
    m_pool.setMaxThreadCount(1);
}

QuantizeRunner::~QuantizeRunner() {
    if (m_cancel) m_cancel->store(true);
    m_pool.waitForDone();
}

bool QuantizeRunner::start(ModelPtr model, const qz::QuantizeParams& params) {
    if (m_running || !model) return false;
    const quint64 job = ++m_job;
    auto cancelFlag = std::make_shared<std::atomic<bool>>(false);
    m_cancel = cancelFlag;
    m_running = true;
    m_timer.start();
    emit started();

    ProgressHook hook = m_hook;
    m_pool.start([this, job, model, params, cancelFlag, hook] {
        using Clock = std::chrono::steady_clock;
        auto lastReport = Clock::now() - std::chrono::seconds(1);
        const qz::ProgressFn progressFn = [&](const qz::ProgressInfo& info) {
            if (hook) hook(info);
            const auto now = Clock::now();
            if (now - lastReport > std::chrono::milliseconds(50) || info.fraction >= 1.0) {
                lastReport = now;
                const double f = info.fraction;
                const QString step = toQ(info.step);
                QMetaObject::invokeMethod(this, [this, job, f, step] { deliverProgress(job, f, step); },
                                          Qt::QueuedConnection);
            }
            return !cancelFlag->load();
        };
        const auto onTensor = [this, job, cancelFlag](const qz::TensorQuantResult& r) {
            if (cancelFlag->load()) return;
            QMetaObject::invokeMethod(
                this,
                [this, job, r] {
                    if (job == m_job && m_running) emit tensorDone(r);
                },
                Qt::QueuedConnection);
        };

        ResultPtr result;
        QString error;
        bool wasCancelled = false;
        try {
            auto r = qz::runQuantize(*model, params, progressFn, onTensor);
            if (r)
                result = std::make_shared<const qz::QuantizeResult>(std::move(r.value()));
            else {
                error = toQ(r.error().message);
                wasCancelled = r.error().cancelled;
            }
        } catch (const std::exception& e) {
            error = QStringLiteral("quantization failed: ") + QString::fromUtf8(e.what());
        }
        QMetaObject::invokeMethod(
            this,
            [this, job, result, error, wasCancelled] {
                if (job != m_job || !m_running) return;  // cancelled from the UI: already reported
                m_running = false;
                if (result)
                    emit finished(result);
                else if (wasCancelled)
                    emit cancelled();
                else
                    emit failed(error);
            },
            Qt::QueuedConnection);
    });
    return true;
}

void QuantizeRunner::cancel() {
    if (!m_running) return;
    if (m_cancel) m_cancel->store(true);  // the worker sees this at its next progress report
    m_running = false;                     // forget the job: its remaining signals are dropped
    ++m_job;
    emit cancelled();
}

void QuantizeRunner::deliverProgress(quint64 job, double fraction, const QString& step) {
    if (job != m_job || !m_running) return;
    const double elapsed = m_timer.elapsed() / 1000.0;
    const double eta = fraction > 0.02 ? elapsed * (1.0 - fraction) / fraction : -1.0;
    emit progress(fraction, step, eta);
}

}  // namespace qz::ui

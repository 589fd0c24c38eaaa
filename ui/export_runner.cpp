#include "export_runner.h"

#include <QMetaObject>
#include <QPointer>

namespace qz::ui {

ExportRunner::ExportRunner(QObject* parent) : QObject(parent) {
    qRegisterMetaType<qz::GgufTensorLog>();
    qRegisterMetaType<ExportResultPtr>();
    m_pool.setMaxThreadCount(1);
    m_planPool.setMaxThreadCount(1);
}

ExportRunner::~ExportRunner() {
    cancel();
    waitForIdle();
}

void ExportRunner::plan(ModelPtr model, qz::GgufExportParams params) {
    params.dryRun = true;
    const quint64 id = ++m_planRequest;
    QPointer<ExportRunner> self(this);
    m_planPool.start([self, this, model, params, id] {
        if (!self || id != m_planRequest.load()) return;  // superseded before it started
        auto r = qz::exportGguf(*model, params, {});
        QMetaObject::invokeMethod(self, [self, this, id, ok = r.ok(),
                                         value = r.ok() ? std::make_shared<const qz::GgufExportResult>(std::move(*r)) : nullptr,
                                         msg = r.ok() ? QString() : toQ(r.error().message)] {
            if (!self || id != m_planRequest.load()) return;
            if (ok)
                emit planned(value);
            else
                emit planFailed(msg);
        }, Qt::QueuedConnection);
    });
}

bool ExportRunner::start(ModelPtr model, qz::GgufExportParams params) {
    if (m_running || !model) return false;
    params.dryRun = false;
    m_running = true;
    m_cancel = std::make_shared<std::atomic<bool>>(false);
    const quint64 job = ++m_job;
    m_timer.start();
    emit started();
    QPointer<ExportRunner> self(this);
    auto cancelFlag = m_cancel;
    m_pool.start([self, this, model, params, job, cancelFlag] {
        auto deliver = [&](auto fn) {
            QMetaObject::invokeMethod(self, [self, this, job, fn] {
                if (self && job == m_job) fn();
            }, Qt::QueuedConnection);
        };
        auto progressFn = [&](const qz::ProgressInfo& p) {
            const double f = p.fraction;
            const QString step = toQ(p.step);
            deliver([this, f, step] {
                const double elapsed = m_timer.elapsed() / 1000.0;
                const double eta = f > 0.02 && elapsed > 0.3 ? elapsed * (1 - f) / f : -1;
                emit progress(f, step, eta);
            });
            return !cancelFlag->load();
        };
        auto onTensor = [&](const qz::GgufTensorLog& log) { deliver([this, log] { emit tensorDone(log); }); };
        auto r = qz::exportGguf(*model, params, progressFn, onTensor);
        if (r.ok()) {
            auto value = std::make_shared<const qz::GgufExportResult>(std::move(*r));
            deliver([this, value] { m_running = false; emit finished(value); });
        } else if (r.error().cancelled) {
            deliver([this] { m_running = false; emit cancelled(); });
        } else {
            const QString msg = toQ(r.error().message);
            deliver([this, msg] { m_running = false; emit failed(msg); });
        }
    });
    return true;
}

void ExportRunner::cancel() {
    if (!m_running || !m_cancel) return;
    m_cancel->store(true);  // seen by the worker at its next progress report
    m_running = false;
    ++m_job;                // late signals of this job are dropped
    emit cancelled();
}

}  // namespace qz::ui

#include "background_job.h"

#include <QMetaObject>
#include <QPointer>
#include <exception>
#include <mutex>
#include <new>

#include "qt_types.h"

namespace qz::ui {

BackgroundJob::BackgroundJob(QObject* parent) : QObject(parent) { m_pool.setMaxThreadCount(1); }

BackgroundJob::~BackgroundJob() {
    cancel();
    waitForIdle();
}

bool BackgroundJob::start(Work work) {
    if (m_running || !work) return false;
    m_running = true;
    m_cancel = std::make_shared<std::atomic<bool>>(false);
    const quint64 job = ++m_job;
    m_timer.start();
    emit started();
    QPointer<BackgroundJob> self(this);
    auto flag = m_cancel;
    ProgressHook hook = m_hook;
    m_pool.start([self, this, job, flag, work, hook] {
        if (flag->load()) return;  // cancelled before it started: cancelled() was emitted then
        // Runs fn on the UI thread if this job is still the current one.
        auto post = [self, this, job](std::function<void()> fn) {
            QMetaObject::invokeMethod(self, [self, this, job, fn = std::move(fn)] {
                if (self && job == m_job) fn();
            }, Qt::QueuedConnection);
        };
        // The throttle state is shared by whichever core threads report (they may poll in parallel).
        std::mutex throttle;
        QElapsedTimer sinceReport;
        sinceReport.start();
        bool first = true;
        std::function<void()> deliver;  // set by the work through setResult
        std::mutex deliverMutex;
        Context ctx;
        ctx.post = post;
        ctx.cancelled = [flag] { return flag->load(); };
        ctx.setResult = [&](std::function<void()> fn) {
            std::lock_guard lock(deliverMutex);
            deliver = std::move(fn);
        };
        ctx.progress = [&, flag](const qz::ProgressInfo& p) {
            if (hook) hook(p);
            std::unique_lock lock(throttle, std::try_to_lock);  // a busy lock: another thread is reporting
            if (lock.owns_lock() && (first || p.fraction >= 1.0 || sinceReport.elapsed() >= 50)) {
                first = false;
                sinceReport.restart();
                const double f = p.fraction;
                const QString step = toDisplay(p.step); // steps and errors name tensors and files
                post([this, f, step] {
                    const double elapsed = m_timer.elapsed() / 1000.0;
                    const double eta = f > 0.02 && elapsed > 0.3 ? elapsed * (1 - f) / f : -1;
                    emit progress(f, step, eta);
                });
            }
            return !flag->load();
        };
        qz::Status st = qz::okStatus();
        try {
            st = work(ctx);
        } catch (const std::bad_alloc&) {
            st = qz::makeError("out of memory");
        } catch (const std::exception& e) {
            st = qz::makeError(std::string("unexpected error: ") + e.what());
        } catch (...) {
            st = qz::makeError("unexpected error");
        }
        if (st.ok() && flag->load()) {
            // Cancelled (so no longer the current job) but the work completed: say so.
            QMetaObject::invokeMethod(self, [self, this] {
                if (self) emit finishedAfterCancel();
            }, Qt::QueuedConnection);
            return;
        }
        // The result moves into the posted call: the worker keeps no reference to it, so it is released by
        // whichever thread drops the posted call last (Qt's reference count, tests/tsan.supp).
        if (st.ok())
            post([this, deliver = std::move(deliver)] {
                m_running = false;
                if (deliver) deliver();
                emit finished();
            });
        else if (st.error().cancelled || flag->load())
            post([this] { m_running = false; emit cancelled(); });
        else
            post([this, msg = toDisplay(st.error().message)] {
                m_running = false;
                emit failed(msg);
            });
    });
    return true;
}

void BackgroundJob::cancel() {
    if (!m_running || !m_cancel) return;
    m_cancel->store(true);  // seen by the worker at its next progress report
    m_running = false;
    ++m_job;                // late posts of this job are dropped
    emit cancelled();
}

}  // namespace qz::ui

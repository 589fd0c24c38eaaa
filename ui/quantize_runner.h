// Runs qz::runQuantize on a one-thread pool. Cancellation: cancel() is called on the UI thread and
// sets the job's std::atomic<bool> directly; the job's ProgressFn returns !flag, so the worker stops
// at its next progress report. A cancelled job is forgotten at once (its late signals are dropped),
// so the UI can start another job immediately; the pool runs it after the old one has unwound.
//
// Signals (all delivered on the UI thread): started, progress (throttled, with an ETA), tensorDone
// for every finished tensor (results appear live), then exactly one of finished / failed / cancelled.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QThreadPool>
#include <atomic>
#include <functional>
#include <memory>

#include "qt_types.h"

namespace qz::ui {

class QuantizeRunner : public QObject {
    Q_OBJECT
public:
    // Called on the worker thread before every progress report (tests use it to make a job slow).
    using ProgressHook = std::function<void(const qz::ProgressInfo&)>;

    explicit QuantizeRunner(QObject* parent = nullptr);
    ~QuantizeRunner() override;

    // Starts a job; returns false (and does nothing) if one is running.
    bool start(ModelPtr model, const qz::QuantizeParams& params);
    // Requests cancellation of the running job (UI thread, direct call, no event loop round trip).
    void cancel();
    bool isRunning() const { return m_running; }
    void setProgressHook(ProgressHook hook) { m_hook = std::move(hook); }
    // Blocks until every worker has returned (used on shutdown and by tests).
    void waitForIdle() { m_pool.waitForDone(); }

signals:
    void started();
    void progress(double fraction, const QString& step, double etaSeconds);  // eta < 0: unknown yet
    void tensorDone(const qz::TensorQuantResult& result);
    void finished(qz::ui::ResultPtr result);
    void failed(const QString& message);
    void cancelled();

private:
    void deliverProgress(quint64 job, double fraction, const QString& step);

    QThreadPool m_pool;
    std::shared_ptr<std::atomic<bool>> m_cancel;
    quint64 m_job = 0;
    bool m_running = false;
    QElapsedTimer m_timer;
    ProgressHook m_hook;
};

}  // namespace qz::ui

// A one-job-at-a-time background runner for long core operations whose results arrive piece by piece
// (the calibrated exports: GPTQ, EXL2). The work function runs on a one-thread pool and gets a Context:
//   - progress: a qz::ProgressFn to hand to the core; it forwards (fraction, step) to the UI at most
//     every 50 ms with an ETA, and returns false once the job is cancelled, so the core stops at its
//     next report and returns cancelledError();
//   - post(fn): runs fn on the UI thread, in order, unless the job was cancelled or superseded (so a
//     layer report or a result of a cancelled job never reaches the screen).
// The work function returns a Status; then exactly one of finished / failed / cancelled is emitted.
// Cancellation as in ExportRunner / QuantizeRunner: cancel() sets the job's atomic flag directly from
// the UI thread, emits cancelled() at once and forgets the job, so the UI is idle immediately; the
// worker unwinds on its own (waitForIdle() waits for it, e.g. in tests and destructors). If the work
// had got past its last cancel point and still succeeded, finishedAfterCancel() is emitted when it
// returns (its posts stay dropped), so the UI can correct "cancelled" (e.g. the folder was written).
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QThreadPool>
#include <atomic>
#include <functional>
#include <memory>

#include "common/progress.h"
#include "common/result.h"

namespace qz::ui {

class BackgroundJob : public QObject {
    Q_OBJECT
public:
    struct Context {
        qz::ProgressFn progress;
        std::function<void(std::function<void()>)> post;
        std::function<bool()> cancelled;
    };
    using Work = std::function<qz::Status(const Context&)>;

    explicit BackgroundJob(QObject* parent = nullptr);
    ~BackgroundJob() override;

    // false if a job is running.
    bool start(Work work);
    void cancel();
    bool isRunning() const { return m_running; }
    void waitForIdle() { m_pool.waitForDone(); }
    double elapsedSeconds() const { return m_timer.isValid() ? m_timer.elapsed() / 1000.0 : 0.0; }

signals:
    void started();
    void progress(double fraction, const QString& step, double etaSeconds);  // eta < 0: unknown yet
    void finished();
    void failed(const QString& message);
    void cancelled();
    void finishedAfterCancel();  // a cancelled job's work returned success after all

private:
    QThreadPool m_pool;
    std::shared_ptr<std::atomic<bool>> m_cancel;
    quint64 m_job = 0;
    bool m_running = false;
    QElapsedTimer m_timer;
};

}  // namespace qz::ui

// The one background runner of the UI: every long core operation (quantize, GGUF export and its dry-run
// plan, GPTQ / EXL2 exports, evaluation, generation, layer histograms) runs through a BackgroundJob.
// One job at a time per BackgroundJob, on its own one-thread pool. The work function gets a Context:
//   - progress: a qz::ProgressFn to hand to the core; it forwards (fraction, step) to the UI at most
//     every 50 ms (and at 100 %) with an ETA, and returns false once the job is cancelled, so the core
//     stops at its next report and returns cancelledError();
//   - post(fn): runs fn on the UI thread, in order, unless the job was cancelled or superseded (so a
//     partial result of a cancelled job never reaches the screen);
//   - setResult(fn): fn runs on the UI thread when the work succeeded, after isRunning() became false
//     and just before finished() (run() below wraps this for a qz::Result<T>).
// The work returns a Status; an exception escaping it (std::bad_alloc included) becomes an error
// result. Then exactly one of finished / failed / cancelled is emitted.
// Cancellation: cancel() sets the job's atomic flag directly from the UI thread (no event loop round
// trip), emits cancelled() at once and forgets the job, so the UI is idle immediately and may start
// another one (the pool runs it once the old one has unwound; a job cancelled before it started never
// runs). If the work had got past its last cancel point and still succeeded, finishedAfterCancel() is
// emitted when it returns (its posts stay dropped), so the UI can correct "cancelled" (e.g. the folder
// was written).
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
        std::function<void(std::function<void()>)> setResult;
        std::function<bool()> cancelled;
    };
    using Work = std::function<qz::Status(const Context&)>;
    // Called on the worker before every progress report, unthrottled (tests use it to slow a job down).
    using ProgressHook = std::function<void(const qz::ProgressInfo&)>;

    explicit BackgroundJob(QObject* parent = nullptr);
    ~BackgroundJob() override;

    // false if a job is running.
    bool start(Work work);
    // A work returning qz::Result<T>: on success onResult(T&&) runs on the UI thread before finished().
    template <class T>
    bool run(std::function<qz::Result<T>(const Context&)> fn, std::function<void(T&&)> onResult) {
        return start([fn = std::move(fn), onResult = std::move(onResult)](const Context& ctx) -> qz::Status {
            auto r = fn(ctx);
            if (!r) return r.error();
            auto value = std::make_shared<T>(std::move(*r));
            ctx.setResult([onResult, value] {
                if (onResult) onResult(std::move(*value));
            });
            return qz::okStatus();
        });
    }
    void cancel();
    bool isRunning() const { return m_running; }
    void waitForIdle() { m_pool.waitForDone(); }
    double elapsedSeconds() const { return m_timer.isValid() ? m_timer.elapsed() / 1000.0 : 0.0; }
    void setProgressHook(ProgressHook hook) { m_hook = std::move(hook); }

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
    ProgressHook m_hook;
};

}  // namespace qz::ui

// Runs GGUF export jobs (qz::exportGguf) off the UI thread: a dry run to plan (types, sizes) and the
// real export. Cancellation as in QuantizeRunner: cancel() sets the job's atomic flag directly from
// the UI thread and the job's ProgressFn returns !flag. Signals of a superseded job are dropped.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QThreadPool>
#include <atomic>
#include <memory>

#include "export/gguf_export.h"
#include "qt_types.h"

Q_DECLARE_METATYPE(qz::GgufTensorLog)
Q_DECLARE_METATYPE(std::shared_ptr<const qz::GgufExportResult>)

namespace qz::ui {

using ExportResultPtr = std::shared_ptr<const qz::GgufExportResult>;

class ExportRunner : public QObject {
    Q_OBJECT
public:
    explicit ExportRunner(QObject* parent = nullptr);
    ~ExportRunner() override;

    // Plans (dry run) on a worker; a newer plan request supersedes an older one.
    void plan(ModelPtr model, qz::GgufExportParams params);
    // Starts the export; false if one is running.
    bool start(ModelPtr model, qz::GgufExportParams params);
    void cancel();
    bool isRunning() const { return m_running; }
    void waitForIdle() { m_pool.waitForDone(); m_planPool.waitForDone(); }

signals:
    void planned(qz::ui::ExportResultPtr plan);
    void planFailed(const QString& message);
    void started();
    void progress(double fraction, const QString& step, double etaSeconds);
    void tensorDone(const qz::GgufTensorLog& log);
    void finished(qz::ui::ExportResultPtr result);
    void failed(const QString& message);
    void cancelled();

private:
    QThreadPool m_pool, m_planPool;
    std::shared_ptr<std::atomic<bool>> m_cancel;
    std::atomic<quint64> m_planRequest{0};
    quint64 m_job = 0;
    bool m_running = false;
    QElapsedTimer m_timer;
};

}  // namespace qz::ui

// The model-wide histogram of the original weights, computed on a worker as soon as a model is open
// (jobs/model_histogram.h streams it tensor by tensor), with progress for the Histograms tab. A newer
// request (another model, another range) supersedes the running one; a quantization run cancels it,
// since the run computes the original and dequantized histograms itself.
#pragma once

#include <QObject>

#include "jobs/quantize_job.h"
#include "qt_types.h"
#include "stats/histogram.h"

namespace qz::ui {

class BackgroundJob;

class ModelHistogramJob : public QObject {
    Q_OBJECT
public:
    explicit ModelHistogramJob(QObject* parent = nullptr);
    void start(ModelPtr model, const qz::HistogramSpec& spec);
    void cancel();
    bool isRunning() const;
    BackgroundJob* job() const { return m_job; }

signals:
    void progress(double fraction);
    void ready(const qz::Histogram& original, quint64 tensors, double seconds);
    void failed(const QString& message);

private:
    BackgroundJob* m_job;
};

}  // namespace qz::ui

#include "model_histogram_job.h"

#include "background_job.h"
#include "jobs/model_histogram.h"

namespace qz::ui {

ModelHistogramJob::ModelHistogramJob(QObject* parent) : QObject(parent), m_job(new BackgroundJob(this)) {
    connect(m_job, &BackgroundJob::progress, this, [this](double f, const QString&, double) { emit progress(f); });
    connect(m_job, &BackgroundJob::failed, this, &ModelHistogramJob::failed);
}

void ModelHistogramJob::start(ModelPtr model, const qz::HistogramSpec& spec) {
    if (m_job->isRunning()) m_job->cancel();  // superseded: the new request wins
    if (!model) return;
    qz::ModelHistogramParams params;
    params.spec = spec;
    m_job->run<qz::ModelHistogramResult>(
        [model, params](const BackgroundJob::Context& ctx) {
            return qz::computeModelHistogram(*model, params, ctx.progress);
        },
        [this](qz::ModelHistogramResult&& r) { emit ready(r.histogram, r.tensors, r.seconds); });
}

void ModelHistogramJob::cancel() {
    if (m_job->isRunning()) m_job->cancel();
}

bool ModelHistogramJob::isRunning() const { return m_job->isRunning(); }

}  // namespace qz::ui

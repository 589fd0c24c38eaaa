#include "evaluate_runner.h"

#include <QMetaObject>
#include <QPointer>

namespace qz::ui {

qz::Result<qz::WeightOverrides> overridesFromQuantizeResult(const qz::Model& model, const qz::QuantizeResult& result,
                                                            const qz::ProgressFn& progress) {
    qz::WeightOverrides out;
    const size_t n = result.tensors.size();
    for (size_t i = 0; i < n; ++i) {
        const auto& t = result.tensors[i];
        if (progress && !progress({double(i) / std::max<size_t>(1, n), "re-quantizing " + t.name}))
            return qz::cancelledError();
        std::vector<float> deq;
        auto r = qz::analyzeTensor(model, t.tensorIndex, result.spec, 16, &deq);
        if (!r) return r.error();
        out[t.name] = std::move(deq);
    }
    return out;
}

EvaluateRunner::EvaluateRunner(QObject* parent) : QObject(parent) {
    qRegisterMetaType<EvalRow>();
    m_pool.setMaxThreadCount(1);
}

EvaluateRunner::~EvaluateRunner() {
    cancel();
    waitForIdle();
}

bool EvaluateRunner::launch(
    std::function<void(const std::function<bool(double, const std::string&)>&, const std::shared_ptr<std::atomic<bool>>&)>
        work) {
    if (m_running) return false;
    m_running = true;
    m_cancel = std::make_shared<std::atomic<bool>>(false);
    const quint64 job = ++m_job;
    emit started();
    QPointer<EvaluateRunner> self(this);
    auto flag = m_cancel;
    m_pool.start([self, this, job, flag, work] {
        auto report = [&](double f, const std::string& step) {
            const QString s = toQ(step);
            QMetaObject::invokeMethod(self, [self, this, job, f, s] {
                if (self && job == m_job) emit progress(f, s);
            }, Qt::QueuedConnection);
            return !flag->load();
        };
        work(report, flag);
    });
    return true;
}

namespace {
// Runs fn on the UI thread if the job is still current.
template <class F>
void post(QPointer<EvaluateRunner> self, const quint64* jobCounter, quint64 job, F fn) {
    QMetaObject::invokeMethod(self, [self, jobCounter, job, fn] {
        if (self && *jobCounter == job) fn();
    }, Qt::QueuedConnection);
}

qz::Result<OverridesPtr> overridesOf(EvalVariant& v, const qz::ProgressFn& progress) {
    if (v.overrides || !v.build) return v.overrides;
    auto r = v.build(progress);
    if (!r) return r.error();
    v.overrides = *r;
    return v.overrides;
}
}  // namespace

bool EvaluateRunner::evaluate(EvalVariant original, std::vector<EvalVariant> variants, std::string text,
                              qz::EvalParams params) {
    if (!original.model || m_running) return false;
    const quint64 job = m_job + 1;
    QPointer<EvaluateRunner> self(this);
    const quint64* counter = &m_job;
    return launch([=, this](const std::function<bool(double, const std::string&)>& report,
                            const std::shared_ptr<std::atomic<bool>>& flag) mutable {
        const double share = 1.0 / double(variants.size() + 1);
        auto scaled = [&](int k, const QString& what) {
            return [&, k, what](const qz::ProgressInfo& p) {
                return report(share * (k + p.fraction), toStd(what) + ": " + p.step);
            };
        };
        auto finish = [&](auto fn) { post(self, counter, job, fn); };
        auto fail = [&](const qz::Error& e) {
            if (e.cancelled || flag->load())
                finish([this] { m_running = false; emit cancelled(); });
            else
                finish([this, msg = toQ(e.message)] { m_running = false; emit failed(msg); });
        };
        qz::KldBase base;
        auto o = overridesOf(original, scaled(0, original.name));
        if (!o) return fail(o.error());
        auto pr = qz::evaluatePerplexity(*original.model, text, params, scaled(0, original.name), o->get(), &base);
        if (!pr) return fail(pr.error());
        EvalRow row0;
        row0.index = 0;
        row0.ok = true;
        row0.ppl = pr->ppl;
        row0.pplError = pr->pplError;
        row0.tokens = pr->count;
        finish([this, row0] { emit rowReady(row0); });
        for (size_t i = 0; i < variants.size(); ++i) {
            if (flag->load()) return fail(qz::cancelledError());
            EvalRow row;
            row.index = int(i + 1);
            auto ov = overridesOf(variants[i], scaled(int(i + 1), variants[i].name));
            qz::Result<qz::KldResult> kr = ov ? qz::evaluateKlDivergence(*variants[i].model, base, params,
                                                                          scaled(int(i + 1), variants[i].name), ov->get())
                                              : qz::Result<qz::KldResult>(ov.error());
            if (!kr) {
                if (kr.error().cancelled || flag->load()) return fail(kr.error());
                row.error = toQ(kr.error().message);  // one bad variant does not stop the others
            } else {
                row.ok = true;
                row.ppl = kr->pplQ;
                row.pplError = kr->pplQError;
                row.deltaPpl = kr->pplQ - pr->ppl;
                row.meanKld = kr->meanKld;
                row.sameTopPercent = 100.0 * kr->sameTop;
                row.tokens = kr->count;
            }
            finish([this, row] { emit rowReady(row); });
        }
        finish([this] { m_running = false; emit finished(); });
    });
}

bool EvaluateRunner::generate(EvalVariant original, std::vector<EvalVariant> variants, qz::GenerateParams params,
                              int threads) {
    if (!original.model || m_running) return false;
    const quint64 job = m_job + 1;
    QPointer<EvaluateRunner> self(this);
    const quint64* counter = &m_job;
    variants.insert(variants.begin(), std::move(original));
    return launch([=, this](const std::function<bool(double, const std::string&)>& report,
                            const std::shared_ptr<std::atomic<bool>>& flag) mutable {
        auto finish = [&](auto fn) { post(self, counter, job, fn); };
        const double share = 1.0 / double(variants.size());
        for (size_t i = 0; i < variants.size(); ++i) {
            auto progress = [&, i](const qz::ProgressInfo& p) {
                return report(share * (double(i) + p.fraction), toStd(variants[i].name) + ": " + p.step);
            };
            auto ov = overridesOf(variants[i], progress);
            auto onToken = [&, i](int32_t, const std::string& piece) {
                finish([this, i, s = toQ(piece)] { emit tokenGenerated(int(i), s); });
                return !flag->load();
            };
            auto r = ov ? qz::generateText(*variants[i].model, params, onToken, progress, ov->get(), threads)
                        : qz::Result<qz::GenerateResult>(ov.error());
            if (!r) {
                if (r.error().cancelled || flag->load()) {
                    finish([this] { m_running = false; emit cancelled(); });
                    return;
                }
                finish([this, msg = toQ(variants[i].name.toStdString() + ": " + r.error().message)] {
                    m_running = false;
                    emit failed(msg);
                });
                return;
            }
            const double tps = r->generateSeconds > 0 ? double(r->tokens.size()) / r->generateSeconds : 0.0;
            finish([this, i, t = toQ(r->fullText), tps] { emit generationDone(int(i), t, tps); });
        }
        finish([this] { m_running = false; emit finished(); });
    });
}

void EvaluateRunner::cancel() {
    if (!m_running || !m_cancel) return;
    m_cancel->store(true);
    m_running = false;
    ++m_job;
    emit cancelled();
}

}  // namespace qz::ui

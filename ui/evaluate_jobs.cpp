#include "evaluate_jobs.h"

#include <QLabel>
#include <atomic>
#include <mutex>
#include <optional>

#include "common/parallel.h"
#include "variants/row_sources.h"
#include "variants/variants.h"

namespace qz::ui {

namespace {
qz::Result<EvalWeights> weightsOf(EvalVariant& v, const qz::ProgressFn& progress) {
    if (v.overrides || v.sources || !v.build) return EvalWeights{v.overrides, v.sources};
    auto r = v.build(progress);
    if (!r) return r.error();
    v.overrides = r->overrides;
    v.sources = r->sources;
    return *r;
}

// Progress of model k of n, prefixed with its name.
qz::ProgressFn share(const BackgroundJob::Context& ctx, size_t k, size_t n, const QString& name) {
    const double part = 1.0 / double(std::max<size_t>(1, n));
    return [&ctx, k, part, prefix = toStd(name) + ": "](const qz::ProgressInfo& p) {
        return ctx.progress({part * (double(k) + p.fraction), prefix + p.step});
    };
}
}  // namespace

BackgroundJob::Work evaluateWork(EvalVariant original, std::vector<EvalVariant> variants, std::string text,
                                 qz::EvalParams params, std::function<void(const EvalRow&)> onRow) {
    return [=](const BackgroundJob::Context& ctx) mutable -> qz::Status {
        const size_t n = variants.size() + 1;
        auto emitRow = [&](const EvalRow& row) {
            if (onRow) ctx.post([onRow, row] { onRow(row); });
        };
        qz::KldBase base; // kept only when variants are scored against it
        const auto p0 = share(ctx, 0, n, original.name);
        auto o = weightsOf(original, p0);
        if (!o) return o.error();
        auto pr = qz::evaluatePerplexity(*original.model, text, params, p0, o->overrides.get(),
                                         variants.empty() ? nullptr : &base, o->sources.get());
        if (!pr) return pr.error();
        EvalRow row0;
        row0.index = 0;
        row0.ok = true;
        row0.ppl = pr->ppl;
        row0.pplError = pr->pplError;
        row0.tokens = pr->count;
        emitRow(row0);
        for (size_t i = 0; i < variants.size(); ++i) {
            if (ctx.cancelled()) return qz::cancelledError();
            EvalRow row;
            row.index = int(i + 1);
            const auto pi = share(ctx, i + 1, n, variants[i].name);
            auto ov = weightsOf(variants[i], pi);
            qz::Result<qz::KldResult> kr = ov ? qz::evaluateKlDivergence(*variants[i].model, base, params, pi,
                                                                         ov->overrides.get(), ov->sources.get())
                                              : qz::Result<qz::KldResult>(ov.error());
            if (!kr) {
                if (kr.error().cancelled || ctx.cancelled()) return kr.error();
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
            emitRow(row);
        }
        return qz::okStatus();
    };
}

BackgroundJob::Work generateWork(EvalVariant original, std::vector<EvalVariant> variants, qz::GenerateParams params,
                                 int threads, TokenFn onToken, GenerationDoneFn onDone) {
    variants.insert(variants.begin(), std::move(original));
    return [=](const BackgroundJob::Context& ctx) mutable -> qz::Status {
        for (size_t i = 0; i < variants.size(); ++i) {
            const auto progress = share(ctx, i, variants.size(), variants[i].name);
            auto ov = weightsOf(variants[i], progress);
            auto tokenFn = [&, i](int32_t, const std::string& piece) {
                if (onToken) ctx.post([onToken, i, s = toQ(piece)] { onToken(int(i), s); });
                return !ctx.cancelled();
            };
            auto r = ov ? qz::generateText(*variants[i].model, params, tokenFn, progress, ov->overrides.get(),
                                           threads, ov->sources.get())
                        : qz::Result<qz::GenerateResult>(ov.error());
            if (!r) {
                if (r.error().cancelled || ctx.cancelled()) return qz::cancelledError();
                return qz::makeError(toStd(variants[i].name) + ": " + r.error().message);
            }
            const double tps = r->generateSeconds > 0 ? double(r->tokens.size()) / r->generateSeconds : 0.0;
            if (onDone) ctx.post([onDone, i, t = toQ(r->fullText), tps] { onDone(int(i), t, tps); });
        }
        return qz::okStatus();
    };
}

QString memoryFigure(uint64_t bytes) {
    return bytes < 1'000'000'000ull ? QStringLiteral("%1 MB").arg(double(bytes) * 1e-6, 0, 'f', 0)
                                    : QStringLiteral("%1 GB").arg(double(bytes) * 1e-9, 0, 'f', 2);
}

qz::MemoryEstimate evaluationMemory(const qz::Model& original, qz::EvalMemorySettings s) {
    auto hp = qz::readInferHParams(original);
    if (!hp) return {};
    if (s.threads <= 0) s.threads = qz::defaultThreadCount();
    return qz::estimateEvaluation(*hp, original.totalBytes(), s);
}

EvalVariant runnableEvalVariant(const QString& name, ModelPtr original, std::shared_ptr<const qz::Variant> variant,
                                uint64_t bytes, double bitsPerWeight) {
    struct Cache {
        std::mutex mutex;
        std::optional<EvalWeights> value;
        std::atomic<bool> made{false};
    };
    auto cache = std::make_shared<Cache>();
    EvalVariant v;
    v.name = name;
    v.model = original;
    v.build = [original, variant, cache](const qz::ProgressFn& progress) -> qz::Result<EvalWeights> {
        std::lock_guard<std::mutex> lock(cache->mutex);
        if (cache->value) return *cache->value;
        auto r = qz::variantRunnable(original, *variant, progress);
        if (!r) return r.error();
        EvalWeights w;
        if (!r->overrides.empty()) w.overrides = std::make_shared<const qz::WeightOverrides>(std::move(r->overrides));
        if (!r->sources.empty()) w.sources = std::make_shared<const qz::WeightSources>(std::move(r->sources));
        cache->value = w;
        cache->made = true;
        return w;
    };
    v.built = [cache] { return cache->made.load(); };
    // Only the tensors no row source serves are made whole as F32.
    for (const auto& t : variant->tensors)
        if (const qz::TensorInfo* ti = original->find(t.name); !ti || !qz::readableByRows(*ti))
            v.overrideValues += ti ? ti->numel() : t.numel;
    v.bytes = bytes;
    v.bitsPerWeight = bitsPerWeight;
    return v;
}

qz::EvalVariantMemory variantMemory(const EvalVariant& v) {
    qz::EvalVariantMemory m;
    m.overrideValues = v.overrideValues;
    if (v.overrides && !v.overrideValues)
        for (const auto& [name, values] : *v.overrides)
            m.overrideValues += values.size();
    m.overridesHeld = v.overrides != nullptr || (v.built && v.built());
    return m;
}

void showMemoryEstimate(QLabel* label, const qz::MemoryEstimate& e, uint64_t available) {
    if (e.parts.empty()) {
        label->clear();
        label->setToolTip(QString());
        return;
    }
    const QString need = memoryFigure(e.anonBytes() + qz::kMemoryMargin);
    label->setText(available
                       ? QObject::tr("Memory: about %1 of %2 available").arg(need, memoryFigure(available))
                       : QObject::tr("Memory: about %1").arg(need));
    label->setToolTip(QObject::tr("About %1").arg(toQ(e.describe())));
}

uint64_t availableMemory(uint64_t availableOverride) {
    return availableOverride ? availableOverride : qz::availableMemoryBytes();
}

}  // namespace qz::ui

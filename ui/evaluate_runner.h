// Runs evaluation jobs off the UI thread for the Evaluate workspace (ui/evaluate_panel.h):
//  * evaluate(): perplexity of the original model on a text (llama-perplexity's method, -c/--chunks),
//    recording its log-probabilities, then for every variant its perplexity and KL-divergence /
//    same-top-token rate against the original on the same chunks (core/infer/evaluate.h);
//  * generate(): the same prompt and seed through the original and each variant, streaming tokens.
// One job at a time on one worker thread. Cancellation as in ExportRunner: cancel() sets the job's
// atomic flag from the UI thread, the job's ProgressFn / token callback returns !flag, and signals of
// a cancelled (superseded) job are dropped.
// A variant is the original model with some weights overridden (fake-quantized: WeightOverrides,
// possibly built lazily on the worker by `build`), or another model file (a GGUF export).
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QThreadPool>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "infer/evaluate.h"
#include "infer/generate.h"
#include "qt_types.h"

namespace qz::ui {

using OverridesPtr = std::shared_ptr<const qz::WeightOverrides>;

struct EvalVariant {
    QString name;
    ModelPtr model;                 // the model to run (the original's for fake-quantized variants)
    OverridesPtr overrides;         // replaced weights (may be null)
    // Builds the overrides on the worker when `overrides` is null (e.g. re-quantizing each tensor); the
    // builder may cache its result (it is called from the worker thread).
    std::function<qz::Result<OverridesPtr>(const qz::ProgressFn&)> build;
    uint64_t bytes = 0;             // model size on disk / after quantization (0 = unknown)
    double bitsPerWeight = 0;       // (0 = unknown)
};

struct EvalRow {
    int index = 0;                  // 0 = the original, i = variants[i - 1]
    bool ok = false;
    QString error;
    double ppl = 0, pplError = 0;
    double deltaPpl = 0;            // ppl − original's ppl (0 for the original)
    double meanKld = 0;             // (0 for the original)
    double sameTopPercent = 100;
    int64_t tokens = 0;             // scored tokens
};

class EvaluateRunner : public QObject {
    Q_OBJECT
public:
    explicit EvaluateRunner(QObject* parent = nullptr);
    ~EvaluateRunner() override;

    // false if a job is running or there is no original.
    bool evaluate(EvalVariant original, std::vector<EvalVariant> variants, std::string text, qz::EvalParams params);
    // Generates with params for the original (index 0) and each variant (1..n) in turn.
    bool generate(EvalVariant original, std::vector<EvalVariant> variants, qz::GenerateParams params, int threads = 0);
    void cancel();
    bool isRunning() const { return m_running; }
    void waitForIdle() { m_pool.waitForDone(); }

signals:
    void started();
    void progress(double fraction, const QString& step);
    void rowReady(const qz::ui::EvalRow& row);
    void tokenGenerated(int index, const QString& piece);
    void generationDone(int index, const QString& fullText, double tokensPerSecond);
    void finished();
    void failed(const QString& message);
    void cancelled();

private:
    bool launch(std::function<void(const std::function<bool(double, const std::string&)>&,
                                   const std::shared_ptr<std::atomic<bool>>&)>
                    work);
    QThreadPool m_pool;
    std::shared_ptr<std::atomic<bool>> m_cancel;
    quint64 m_job = 0;
    bool m_running = false;
};

// Overrides for `result`'s quantized tensors, re-running analyzeTensor with its spec (what the main
// window's fake-quantized model is). Progress: one unit per tensor.
qz::Result<qz::WeightOverrides> overridesFromQuantizeResult(const qz::Model& model, const qz::QuantizeResult& result,
                                                            const qz::ProgressFn& progress);

}  // namespace qz::ui

Q_DECLARE_METATYPE(qz::ui::EvalRow)

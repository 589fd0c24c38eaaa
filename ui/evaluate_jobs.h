// The evaluation work run by a BackgroundJob for the Evaluate workspace (ui/evaluate_panel.h) and the
// calibrated exports' check:
//  * evaluateWork(): perplexity of the original model on a text (llama-perplexity's method, -c/--chunks),
//    recording its log-probabilities, then for every variant its perplexity and KL-divergence /
//    same-top-token rate against the original on the same chunks (core/infer/evaluate.h);
//  * generateWork(): the same prompt and seed through the original and each variant, streaming tokens.
// The callbacks run on the UI thread (through the job's post, so a cancelled job's never do).
// A variant is the original model with some weights replaced (fake-quantized: row sources that re-make
// the weights on demand, variants/row_sources.h, plus F32 overrides where a tensor cannot be read by rows;
// possibly built lazily on the worker by `build`), or another model file (a GGUF export).
#pragma once

#include <QMetaType>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "background_job.h"
#include "infer/evaluate.h"
#include "infer/generate.h"
#include "jobs/memory_estimate.h"
#include "qt_types.h"

namespace qz {
struct Variant;
}

class QLabel;

namespace qz::ui {

using OverridesPtr = std::shared_ptr<const qz::WeightOverrides>;
using SourcesPtr = std::shared_ptr<const qz::WeightSources>;

// What replaces the original's weights: F32 values and / or row sources (either may be null).
struct EvalWeights {
    OverridesPtr overrides;
    SourcesPtr sources;
};

struct EvalVariant {
    QString name;
    ModelPtr model;                 // the model to run (the original's for fake-quantized variants)
    OverridesPtr overrides;         // replaced weights (may be null)
    SourcesPtr sources;             // weights decoded on demand (may be null)
    // Builds the replaced weights on the worker when `overrides` and `sources` are null (e.g. the row
    // sources of a fake-quantized run); the builder may cache its result (it is called from the worker).
    std::function<qz::Result<EvalWeights>(const qz::ProgressFn&)> build;
    uint64_t bytes = 0;             // model size on disk / after quantization (0 = unknown)
    double bitsPerWeight = 0;       // (0 = unknown)
    // For the memory estimate: the F32 values of the replaced weights (what `overrides` holds or `build`
    // makes), and whether `build` has already made (and cached) them.
    uint64_t overrideValues = 0;
    std::function<bool()> built;
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

// A variant of `original` run from its compact form (qz::variantRunnable: row sources decoded on demand
// from the codes, F32 overrides only for the tensors no source reads by rows, GPT-2's Conv1D weights),
// made on the worker at its first evaluation and then kept by the returned EvalVariant (and its copies).
// For a fake-quantized run, a GPTQ or an EXL2 folder.
EvalVariant runnableEvalVariant(const QString& name, ModelPtr original, std::shared_ptr<const qz::Variant> variant,
                                uint64_t bytes, double bitsPerWeight);

// One row per model as it is measured; a failing variant gives a row with its error and the others
// go on; a failing original fails the job.
BackgroundJob::Work evaluateWork(EvalVariant original, std::vector<EvalVariant> variants, std::string text,
                                 qz::EvalParams params, std::function<void(const EvalRow&)> onRow);

// Generates with params for the original (index 0) and each variant (1..n) in turn.
using TokenFn = std::function<void(int index, const QString& piece)>;
using GenerationDoneFn = std::function<void(int index, const QString& text, double tokensPerSecond)>;
BackgroundJob::Work generateWork(EvalVariant original, std::vector<EvalVariant> variants, qz::GenerateParams params,
                                 int threads, TokenFn onToken, GenerationDoneFn onDone);

// The memory of an evaluation (jobs/memory_estimate.h): s.threads 0 is resolved as the engine does
// (defaultThreadCount). Empty when the model's hyper-parameters cannot be read.
qz::MemoryEstimate evaluationMemory(const qz::Model& original, qz::EvalMemorySettings s);
// What the Evaluate panel and the Compare workspace pass for their variants (setQuantizeResult's lazily
// made weights are kept by the variant, so they count as made for the run until they exist).
qz::EvalVariantMemory variantMemory(const EvalVariant& v);
// Bytes as the memory label shows them: "545 MB" below 10^9 bytes, else "12.34 GB" (10^9).
QString memoryFigure(uint64_t bytes);
// The estimate on a label: "Memory: about 1.23 GB of 20.00 GB available", the parts in its tooltip.
void showMemoryEstimate(QLabel* label, const qz::MemoryEstimate& e, uint64_t available);
// availableOverride, or MemAvailable when it is 0.
uint64_t availableMemory(uint64_t availableOverride);

}  // namespace qz::ui

Q_DECLARE_METATYPE(qz::ui::EvalRow)

// Variants of one open model: every quantization result kept side by side under a name, so a user can
// compare them (the GUI's Compare workspace, `quantzoo-cli compare`).
//
// A variant is one of
//   * FakeQuant: a fake-quantized run (absmax / zero-point at any bits and granularity, NF4 / FP4,
//     LLM.int8()). Stored as its QuantSpec (plus, for LLM.int8(), each tensor's outlier features, which
//     is what its calibration decided): the values are re-made on demand by running the deterministic
//     method on the original's stored weights (jobs/quantize_job.h analyzeTensor). No weight is copied.
//   * GgufFile: a GGUF file (an export of any type or mix, or a file opened beside the model). Stored as
//     its path; read tensor by tensor when needed.
//   * GptqFolder: a GPTQ checkpoint folder as our exporter writes it (variants/gptq_reader.h).
//   * Exl2Folder: an EXL2 folder as exllamav2 (and our exporter) writes it (variants/exl2_reader.h; phi3's
//     fused weights read from the q/k/v and gate/up linears the folder splits them into).
// Each carries its size, bits per weight, per-tensor error figures against the original and, once
// evaluated, PPL / mean KLD / same-top rate against the original on a text.
//
// Memory: every function here holds at most one tensor of the original and its variant at a time.
// Evaluation runs a variant from its compact form: a file variant from its file, a fake-quantized one
// through engine row sources (variants/row_sources.h) that re-make rows on demand, a GPTQ / EXL2 folder
// through row sources over its mapped codes (GPT-2's Conv1D weights, stored [in, out], through transposed
// sources that give the rows of [out, in] the engine multiplies with); only tensors no source can read by
// rows (a stored type that cannot be read in pieces) are made whole as F32 overrides.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "infer/engine.h"
#include "infer/evaluate.h"
#include "jobs/quantize_job.h"
#include "model/model.h"
#include "quant/simple_quant.h"
#include "stats/histogram.h"

namespace qz {

struct Comparison;

enum class VariantKind { FakeQuant, GgufFile, GptqFolder, Exl2Folder };
std::string_view variantKindName(VariantKind k); // "fake-quant", "gguf", "gptq", "exl2"
std::optional<VariantKind> parseVariantKind(std::string_view s);

// Error figures of one tensor of the variant against the original.
struct VariantTensor {
    std::string name; // the original model's tensor name
    uint64_t numel = 0;
    uint64_t bytes = 0; // storage in the variant
    double bitsPerWeight = 0;
    ErrorStats error;
    int layer = -1; // layerIndexOf(name)
};

struct VariantEval {
    bool done = false;
    double ppl = 0, pplError = 0;
    double meanKld = 0;
    double sameTop = 0; // fraction
    int64_t tokens = 0;
    std::string error; // non-empty: the evaluation of this variant failed
};

struct Variant {
    std::string name;
    VariantKind kind = VariantKind::FakeQuant;
    QuantSpec spec;          // FakeQuant
    std::string path;        // GgufFile, GptqFolder, Exl2Folder
    std::string label;       // "Q4_K_M", "GPTQ 4-bit g128", "EXL2 4.0 bpw", "absmax 8-bit per tensor"
    uint64_t bytes = 0;      // the whole model's tensor bytes in this variant
    uint64_t parameters = 0; // the whole model's parameter count
    double bitsPerWeight = 0;
    std::vector<VariantTensor> tensors;                          // in the original's order
    std::map<std::string, std::vector<int32_t>> outlierFeatures; // LLM.int8(): per tensor name
    VariantEval eval;

    const VariantTensor* find(std::string_view tensorName) const;
};

// "absmax:8:tensor", "zeropoint:4:group[:G]", "absmax:4:row", "nf4[:B]", "fp4[:B]", "nf4-dq[:B]",
// "llm-int8[:threshold]". Errors name what is wrong.
Result<QuantSpec> parseMethodSpec(std::string_view text);
// The spec's short form as parseMethodSpec reads it back.
std::string methodSpecString(const QuantSpec& spec);

// Bits per weight of a model's stored tensors (8 · bytes / parameters; 0 for an empty model).
double modelBitsPerWeight(const Model& model);

// The variant of a finished quantize job on `original` (figures copied, nothing re-computed).
Variant variantFromQuantizeResult(const Model& original, const QuantizeResult& result, std::string name = {});
// Runs the fake-quantization (every 2-D tensor) and returns the variant. Methods that need calibration
// read spec.calibrationPath. Progress and cancel as runQuantize.
Result<Variant> makeFakeQuantVariant(const Model& original, const QuantSpec& spec,
                                     const ProgressFn& progress = {}, int threads = 0);
// A GGUF file, GPTQ folder or EXL2 folder: opened, matched tensor by tensor with the original (for a HF
// original through its GGUF conversion plan: names, GPT-2's transposition), size and error figures computed
// one tensor at a time. A file whose tensors match none of the original's is refused. Cancellable.
Result<Variant> openFileVariant(const Model& original, const std::string& path,
                                const ProgressFn& progress = {});

// One tensor of the original and of the variant, in the same element order (for a GGUF variant of a HF
// model: the GGUF layout of both; histograms and error figures do not depend on the order).
struct TensorPair {
    std::vector<float> original, variant;
    std::vector<int64_t> shape;
};
Result<TensorPair> variantTensorPair(const Model& original, const Variant& v, const std::string& tensorName);

// One tensor across several variants on shared bins: the original's histogram and, per variant, the
// dequantized values' and the error's. Bins: the values over the original's robust range (0.1 % / 99.9 %,
// widened to hold every variant's robust range), the errors over a symmetric range holding 99.9 % of every
// variant's |error|. One variant's values are held at a time (plus the original).
struct TensorComparison {
    std::string tensor;
    Histogram original;
    std::vector<Histogram> values, errors; // per variant, in the order given
    std::vector<ErrorStats> stats;
};
Result<TensorComparison> compareTensor(const Model& original, const std::vector<Variant>& variants,
                                       const std::string& tensorName, int bins,
                                       const ProgressFn& progress = {});

// What the engine runs for a variant: the model to load, the tensors given as row sources (decoded on
// demand from the variant's compact form) and the few made whole as F32 overrides (tensors no source
// reads by rows); both empty for a GGUF variant, which is run from its own file. The returned model is the
// original for FakeQuant / GPTQ / EXL2. withSources = false makes every tensor an override (the
// reference the sources must equal, and the path of earlier versions).
struct VariantRunnable {
    std::shared_ptr<const Model> model;
    WeightOverrides overrides;
    WeightSources sources;
};
Result<VariantRunnable> variantRunnable(const std::shared_ptr<const Model>& original, const Variant& v,
                                        const ProgressFn& progress = {}, bool withSources = true);

// Evaluates the original and every variant (or only `which`, indices into c.variants) on `text` as
// llama-perplexity does (-c params.nCtx, --chunks params.nChunks): the original's perplexity, then each
// variant's perplexity, mean KL-divergence and same-top rate against the original on the same chunks
// (infer/evaluate.h). Results go into c.originalEval / c.variants[i].eval and are reported through onResult
// (index -1 = the original) as they come. A variant that fails gets its error in eval.error and the
// others go on; a failing original or a cancel fails the call.
using VariantEvalFn = std::function<void(int index, const VariantEval& eval)>;
Status evaluateComparison(const std::shared_ptr<const Model>& original, Comparison& c, std::string_view text,
                          const EvalParams& params, const std::vector<int>& which = {},
                          const ProgressFn& progress = {}, const VariantEvalFn& onResult = {});

// Error figures per decoder layer (tensors merged; layer -1 = tensors outside the decoder), ascending.
std::vector<std::pair<int, ErrorStats>> perLayerError(const Variant& v);

// Indices of the points on the lower-left Pareto front of (x, y) (no other point has x' <= x and
// y' <= y with one of them strictly smaller), sorted by x. Points with a non-finite coordinate are
// ignored.
std::vector<size_t> paretoFront(const std::vector<double>& x, const std::vector<double>& y);

// llama.cpp's standard mix names ("Q4_K_M", ...) when `label` is one, else empty.
bool isStandardMix(std::string_view label);

// A comparison: the model, the evaluation settings, the variants and what was selected.
struct Comparison {
    std::string modelPath;
    std::string textPath;
    int nCtx = 128;
    int nChunks = 32;   // 0 = all
    std::string tensor; // the tensor shown
    std::vector<Variant> variants;
    std::vector<int> selected; // indices into variants
    std::optional<VariantEval> originalEval;
};

// Project file (JSON, "quantzoo-compare" version 1). Load validates every field (a hostile file gives
// an error naming the file and the field).
std::string comparisonToJson(const Comparison& c);
Result<Comparison> comparisonFromJson(std::string_view json, const std::string& where);
Status saveComparison(const Comparison& c, const std::string& path);
Result<Comparison> loadComparison(const std::string& path);

// The table of variants as CSV (one row per variant: name, kind, label, bytes, bpw, MSE, SQNR, PPL,
// ±, mean KLD, same-top %), original first when evaluated.
std::string comparisonCsv(const Comparison& c, double originalBpw, uint64_t originalBytes);
// One tensor's figures side by side: a row per variant.
std::string tensorFiguresCsv(const Comparison& c, const std::string& tensorName);

// The size-versus-KLD scatter as a standalone SVG (bits per weight on x, mean KLD on y, the Pareto front
// as a line, standard mixes labelled). Variants without an evaluation are left out.
std::string sizeKldSvg(const Comparison& c, int width = 720, int height = 480);

} // namespace qz

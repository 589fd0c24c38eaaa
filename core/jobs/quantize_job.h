// The "quantize and compare" job: fake-quantizes the selected tensors of a model with a QuantSpec,
// one tensor at a time (peak memory ≈ two copies of the largest tensor), and reports per tensor the
// error figures and histograms of the original, the dequantized values and the error, plus the
// whole-model histograms (all weights together, as the first notebook plots them).
// Methods that need calibration (llm-int8) first run the calibration text through the engine
// (jobs/calibration.h; progress 0..30 %, cancellable) and then use each layer's activation maxima.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "jobs/calibration.h"
#include "model/model.h"
#include "quant/simple_quant.h"
#include "stats/histogram.h"

namespace qz {

enum class TensorSelection { All, All2D, Names, Regex };

struct TensorFilter {
    TensorSelection mode = TensorSelection::All2D;
    std::vector<std::string> names;  // for Names
    std::string regex;               // for Regex (ECMAScript, searched in the name)

    // Indices into model.tensors of the tensors selected, or an error (bad regex, unknown name, none).
    Result<std::vector<size_t>> select(const Model& model) const;
};

// Range of the whole-model histograms. Robust (default): from the tail / 1 − tail percentiles of the
// selected original weights (stats/robust_range.h; a cheap first pass over them), so weights within
// ±0.1 fill the plot; values beyond it are counted in the histograms' below / above. Fixed: [lo, hi]
// (the first notebook's (−2, 2) with 150 bins is notebookPreset()).
enum class HistogramRangeMode { Robust, Fixed };

struct HistogramSpec {
    int bins = 150;
    HistogramRangeMode mode = HistogramRangeMode::Robust;
    double tail = 0.001;         // Robust: fraction of the values allowed beyond each edge
    double lo = -2.0, hi = 2.0;  // Fixed
    static HistogramSpec notebookPreset() {
        HistogramSpec s;
        s.mode = HistogramRangeMode::Fixed;
        return s;
    }
};

struct QuantizeParams {
    QuantSpec spec;
    TensorFilter filter;
    HistogramSpec modelHistogram;   // whole-model histograms (original and dequantized)
    int tensorBins = 150;           // per-tensor histograms: the tensor's robust range (0.1 % / 99.9 %)
    int threads = 0;                // 0 = all cores
};

struct TensorQuantResult {
    size_t tensorIndex = 0;
    std::string name;
    std::vector<int64_t> shape;
    DType dtype = DType::F32;
    uint64_t numel = 0;
    uint64_t bytesBefore = 0, bytesAfter = 0;
    double bitsPerWeight = 0;       // after
    ErrorStats error;
    MinMax range;                   // of the original
    // Per-tensor bins over the tensor's 0.1 % / 99.9 % range (the error's: symmetric, 99.9 % of |err|);
    // below / above count the values beyond it.
    Histogram histOriginal, histDequantized, histError;
    // llm-int8 only (outlierColumns = -1 for the other methods):
    int64_t outlierColumns = -1;    // input features kept in fp16
    int64_t inputFeatures = 0;      // in
    std::vector<int32_t> outlierFeatures;  // their indices
    float maxActivation = -1;       // max over features of the calibration max|x| (-1: no calibration data)
    uint64_t outlierBytes = 0;      // fp16 outlier columns + their int32 indices
    std::string notes;              // e.g. "no calibration activations: no outlier column"
    int64_t sampledRows = 0;        // previewTensor: the rows the figures come from (0: all of them)
};

struct QuantizeResult {
    QuantSpec spec;
    std::vector<TensorQuantResult> tensors;  // in model order
    Histogram modelOriginal, modelDequantized;
    ErrorStats total;
    uint64_t bytesBefore = 0, bytesAfter = 0;      // selected tensors only
    uint64_t modelBytesBefore = 0, modelBytesAfter = 0;  // whole model (unselected tensors unchanged)
    uint64_t quantizedParams = 0;
    double seconds = 0;
    // llm-int8: the calibration that was run
    int64_t calibrationTokens = 0;
    int calibrationChunks = 0;
    int64_t outlierColumns = 0;     // summed over the quantized tensors
};

// Analysis of one tensor (also used by the GUI for on-demand views). `dequantized` and `codes`
// receive the values if non-null (sized numel). `calibration` (llm-int8): the activation maxima; a
// tensor without statistics (or none given) gets no outlier column (noted in TensorQuantResult::notes).
Result<TensorQuantResult> analyzeTensor(const Model& model, size_t tensorIndex, const QuantSpec& spec,
                                        int bins, std::vector<float>* dequantized = nullptr,
                                        std::vector<int8_t>* codes = nullptr,
                                        std::vector<float>* original = nullptr,
                                        const CalibrationStats* calibration = nullptr);

// A quick look at a large matrix before its full analysis: the same figures and histograms from at most
// maxValues values taken as evenly spaced whole rows (the first row included; r.sampledRows says how many).
// Row and group scales are those of the sampled rows; a per-tensor scale comes from their max |x|, so the
// preview can differ from analyzeTensor. error and range describe the sample; bytesAfter the whole tensor.
// LLM.int8() (its outliers come from calibration) and tensors that are not matrices are refused.
Result<TensorQuantResult> previewTensor(const Model& model, size_t tensorIndex, const QuantSpec& spec,
                                        int bins, uint64_t maxValues);

// Runs the job. onTensor (optional) is called from the worker thread after each tensor.
Result<QuantizeResult> runQuantize(const Model& model, const QuantizeParams& params, const ProgressFn& progress,
                                   const std::function<void(const TensorQuantResult&)>& onTensor = {});

}  // namespace qz

#include "jobs/quantize_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <regex>
#include <span>

#include "model/convert.h"
#include "quant/llm_int8.h"
#include "stats/robust_range.h"

namespace qz {

namespace {
constexpr double kTensorTail = 0.001;  // per-tensor plots: 0.1 % / 99.9 %

bool isWeightLike(const TensorInfo& t) {
    const auto& tr = traits(t.dtype);
    return (tr.isFloat || tr.isQuantized) && canConvertToF32(t.dtype) && t.numel() > 0;
}

// The figures and histograms of an analysis from the original values x and the dequantized y (y is used
// as scratch for the error unless keepY).
void finishAnalysis(const TensorInfo& t, int bins, const std::vector<float>& x, std::vector<float>& y,
                    bool keepY, TensorQuantResult& r) {
    r.name = t.name;
    r.shape = t.shape;
    r.dtype = t.dtype;
    r.numel = t.numel();
    r.bytesBefore = t.nbytes;
    r.bitsPerWeight = r.numel ? 8.0 * static_cast<double>(r.bytesAfter) / static_cast<double>(r.numel) : 0;
    r.error = errorStats(x.data(), y.data(), x.size());
    r.range = minMaxF32(x.data(), x.size());
    // The bulk of the values, not the extremes, sets the range: a few large weights would otherwise
    // squeeze everything into a bar or two. Values beyond it land in below / above.
    const ValueRange vr = robustRange(x.data(), x.size(), kTensorTail);
    r.histOriginal = histogramF32(x.data(), x.size(), bins, vr.lo, vr.hi);
    r.histDequantized = histogramF32(y.data(), y.size(), bins, vr.lo, vr.hi);
    // Error histogram, symmetric around zero.
    std::vector<float> errBuf;
    std::vector<float>& err = keepY ? errBuf : y;
    if (keepY) errBuf.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i)
        err[i] = y[i] - x[i];
    const ValueRange er = robustRange(err.data(), err.size(), kTensorTail, true);
    r.histError = histogramF32(err.data(), err.size(), bins, er.lo, er.hi);
}
}  // namespace

Result<std::vector<size_t>> TensorFilter::select(const Model& model) const {
    std::vector<size_t> out;
    std::regex re;
    if (mode == TensorSelection::Regex) {
        try {
            re = std::regex(regex, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
            return makeError("invalid tensor regular expression '" + regex + "': " + e.what());
        }
    }
    for (size_t i = 0; i < model.tensors.size(); ++i) {
        const auto& t = model.tensors[i];
        bool take = false;
        switch (mode) {
        case TensorSelection::All: take = true; break;
        case TensorSelection::All2D: take = t.shape.size() == 2; break;
        case TensorSelection::Names:
            take = std::find(names.begin(), names.end(), t.name) != names.end();
            break;
        case TensorSelection::Regex: take = std::regex_search(t.name, re); break;
        }
        if (take && isWeightLike(t)) out.push_back(i);
    }
    if (mode == TensorSelection::Names) {
        for (const auto& n : names)
            if (!model.find(n)) return makeError("no tensor named '" + n + "' in " + model.path);
    }
    if (out.empty()) return makeError("no quantizable tensor matches the selection");
    return out;
}

Result<TensorQuantResult> analyzeTensor(const Model& model, size_t tensorIndex, const QuantSpec& spec, int bins,
                                        std::vector<float>* dequantized, std::vector<int8_t>* codes,
                                        std::vector<float>* original, const CalibrationStats* calibration) {
    if (auto st = spec.validate(); !st) return st.error();
    if (tensorIndex >= model.tensors.size()) return makeError("tensor index out of range");
    const TensorInfo& t = model.tensors[tensorIndex];
    std::vector<float> localOrig, localDeq;
    std::vector<float>& x = original ? *original : localOrig;
    std::vector<float>& y = dequantized ? *dequantized : localDeq;
    x.resize(t.numel());
    if (auto st = readTensorF32(model, t, x); !st) return st.error();
    y.resize(x.size());
    if (codes) codes->resize(x.size());
    const int64_t cols = t.cols(), rows = t.rows();
    TensorQuantResult r;
    if (spec.method == QuantMethod::LlmInt8) {
        const bool inputIsRows = weightInputIsRows(t.name);
        const int64_t nIn = inputIsRows ? rows : cols, nOut = inputIsRows ? cols : rows;
        r.inputFeatures = nIn;
        const ActivationMaxima* a = nullptr;
        if (calibration) {
            auto it = calibration->layers.find(t.name);
            if (it != calibration->layers.end()) a = &it->second;
        }
        if (a && a->nIn == nIn && t.shape.size() == 2) {
            r.outlierFeatures = findOutlierFeatures(a->maxAbs, spec.threshold);
            r.maxActivation = a->maxAbs.empty() ? 0.f : *std::max_element(a->maxAbs.begin(), a->maxAbs.end());
        } else if (a) {
            r.notes = "calibration input width " + std::to_string(a->nIn) + " does not match the tensor's " +
                      std::to_string(nIn) + " input features: no outlier column";
        } else {
            r.notes = calibration ? "no calibration activations (not a linear layer's weight): no outlier column"
                                  : "no calibration: no outlier column";
        }
        r.outlierColumns = static_cast<int64_t>(r.outlierFeatures.size());
        llmInt8QuantizeDequantize(x.data(), rows, cols, inputIsRows, r.outlierFeatures, y.data(),
                                  codes ? codes->data() : nullptr);
        const LlmInt8Bytes b = llmInt8Bytes(nOut, nIn, r.outlierColumns);
        r.outlierBytes = b.outlierBytes + b.indexBytes;
        r.bytesAfter = b.total();
    } else {
        quantizeDequantize(spec, x.data(), rows, cols, y.data(), codes ? codes->data() : nullptr);
        r.bytesAfter = quantizedBytes(spec, rows, cols);
    }

    r.tensorIndex = tensorIndex;
    finishAnalysis(t, bins, x, y, dequantized != nullptr, r);
    return r;
}

Result<TensorQuantResult> previewTensor(const Model& model, size_t tensorIndex, const QuantSpec& spec,
                                        int bins, uint64_t maxValues) {
    if (auto st = spec.validate(); !st) return st.error();
    if (spec.method == QuantMethod::LlmInt8) return makeError("LLM.int8() has no preview");
    if (tensorIndex >= model.tensors.size()) return makeError("tensor index out of range");
    const TensorInfo& t = model.tensors[tensorIndex];
    const int64_t rows = t.rows(), cols = t.cols();
    if (t.shape.size() != 2 || rows < 2 || cols < 1)
        return makeError(t.name + ": only matrices have a preview");
    const auto rowBytes = bytesFor(t.dtype, static_cast<uint64_t>(cols));
    const std::span<const uint8_t> raw = model.rawBytes(t);
    uint64_t total = 0;
    if (!rowBytes || *rowBytes == 0 || !canConvertToF32(t.dtype) ||
        __builtin_mul_overflow(*rowBytes, static_cast<uint64_t>(rows), &total) || total > raw.size())
        return makeError(t.name + ": cannot read rows of type " + std::string(dtypeName(t.dtype)));
    const int64_t take =
        std::clamp<int64_t>(static_cast<int64_t>(maxValues / static_cast<uint64_t>(cols)), 1, rows);
    std::vector<float> x(static_cast<size_t>(take * cols)), y(x.size());
    for (int64_t k = 0; k < take; ++k) {
        const int64_t row = take == rows ? k : k * rows / take; // evenly spaced, the first row included
        if (auto st = convertToF32(t.dtype, raw.data() + static_cast<uint64_t>(row) * *rowBytes,
                                   static_cast<uint64_t>(cols), x.data() + k * cols);
            !st)
            return makeError(t.name + ": " + st.error().message);
    }
    quantizeDequantize(spec, x.data(), take, cols, y.data(), nullptr);
    TensorQuantResult r;
    r.tensorIndex = tensorIndex;
    r.bytesAfter = quantizedBytes(spec, rows, cols);
    finishAnalysis(t, bins, x, y, false, r);
    r.sampledRows = take;
    return r;
}

Result<QuantizeResult> runQuantize(const Model& model, const QuantizeParams& params, const ProgressFn& progress,
                                   const std::function<void(const TensorQuantResult&)>& onTensor) {
    const auto start = std::chrono::steady_clock::now();
    if (auto st = params.spec.validate(); !st) return st.error();
    const auto& hs = params.modelHistogram;
    if (hs.bins < 1 || hs.bins > 100000) return makeError("histogram needs 1..100000 bins");
    if (hs.mode == HistogramRangeMode::Fixed &&
        !(hs.hi > hs.lo && std::isfinite(hs.lo) && std::isfinite(hs.hi)))
        return makeError("histogram range needs finite lo < hi");
    if (hs.mode == HistogramRangeMode::Robust && !(hs.tail >= 0 && hs.tail <= 0.25))
        return makeError("histogram tail fraction must be 0..0.25");
    if (params.tensorBins < 1 || params.tensorBins > 100000) return makeError("tensor bins must be 1..100000");
    auto sel = params.filter.select(model);
    if (!sel) return sel.error();

    // Calibration first (only for the methods that need it): 0..30 % of the progress.
    std::optional<CalibrationStats> calib;
    ProgressFn tensorProgress = progress;
    if (needsCalibration(params.spec.method)) {
        if (params.spec.calibrationPath.empty())
            return makeError(std::string(methodName(params.spec.method)) + " needs a calibration text (--calib)");
        auto text = readCalibrationText(params.spec.calibrationPath);
        if (!text) return text.error();
        CalibrationParams cp;
        cp.nCtx = params.spec.calibCtx;
        cp.nChunks = params.spec.calibChunks;
        cp.threads = params.threads;
        auto scaledProgress = [&](const ProgressInfo& i) { return !progress || progress({0.3 * i.fraction, i.step}); };
        auto st = collectActivationMaxima(model, *text, cp, scaledProgress);
        if (!st) return st.error();
        calib = std::move(*st);
        if (progress)
            tensorProgress = [progress](const ProgressInfo& i) { return progress({0.3 + 0.7 * i.fraction, i.step}); };
    }

    double totalWork = 0;
    for (size_t i : *sel) totalWork += static_cast<double>(model.tensors[i].numel());
    // A robust range needs the distribution first: one cheap pass over the original weights (16-bit
    // storage is counted by bit pattern, no conversion), weighted as a tenth of the quantization.
    constexpr double kScanShare = 0.1;
    const double scanWork = hs.mode == HistogramRangeMode::Robust ? kScanShare * totalWork : 0.0;
    ProgressTracker tracker(tensorProgress, totalWork + scanWork);
    ValueRange range{hs.lo, hs.hi};
    if (hs.mode == HistogramRangeMode::Robust) {
        ValueSketch sketch;
        std::vector<float> buf;
        for (size_t idx : *sel) {
            const TensorInfo& t = model.tensors[idx];
            if (!tracker.advance(0, "scanning " + t.name)) return cancelledError();
            const bool is16 = t.dtype == DType::F16 || t.dtype == DType::BF16;
            const std::span<const uint8_t> raw = is16 ? model.rawBytes(t) : std::span<const uint8_t>();
            const bool rawOk = is16 && raw.size() / 2 >= t.numel() &&
                               reinterpret_cast<uintptr_t>(raw.data()) % alignof(uint16_t) == 0;
            if (!rawOk || !sketch.addRaw(t.dtype, raw.data(), t.numel())) {
                buf.resize(t.numel());
                if (auto st = readTensorF32(model, t, buf); !st)
                    return Error{model.path + ": " + t.name + ": " + st.error().message, false};
                sketch.add(buf.data(), buf.size());
            }
            if (!tracker.advance(kScanShare * static_cast<double>(t.numel()), "scanning " + t.name))
                return cancelledError();
        }
        range = robustRange(sketch, hs.tail);
    }

    QuantizeResult result;
    result.spec = params.spec;
    result.modelOriginal = Histogram(hs.bins, range.lo, range.hi);
    result.modelDequantized = Histogram(hs.bins, range.lo, range.hi);
    std::vector<bool> selected(model.tensors.size(), false);
    for (size_t i : *sel) selected[i] = true;

    std::vector<float> orig, deq;
    for (size_t idx : *sel) {
        const TensorInfo& t = model.tensors[idx];
        if (!tracker.advance(0, t.name)) return cancelledError();  // announce the tensor; sees a cancel
        auto tr = analyzeTensor(model, idx, params.spec, params.tensorBins, &deq, nullptr, &orig,
                                calib ? &*calib : nullptr);
        if (!tr) return Error{model.path + ": " + t.name + ": " + tr.error().message, false};
        result.modelOriginal.merge(histogramF32(orig.data(), orig.size(), hs.bins, range.lo, range.hi));
        result.modelDequantized.merge(histogramF32(deq.data(), deq.size(), hs.bins, range.lo, range.hi));
        result.total.merge(tr->error);
        result.bytesBefore += tr->bytesBefore;
        result.bytesAfter += tr->bytesAfter;
        result.quantizedParams += tr->numel;
        if (tr->outlierColumns > 0) result.outlierColumns += tr->outlierColumns;
        if (onTensor) onTensor(*tr);
        result.tensors.push_back(std::move(*tr));
        if (!tracker.advance(static_cast<double>(t.numel()), t.name)) return cancelledError();
    }
    for (size_t i = 0; i < model.tensors.size(); ++i) {
        result.modelBytesBefore += model.tensors[i].nbytes;
        if (!selected[i]) result.modelBytesAfter += model.tensors[i].nbytes;
    }
    result.modelBytesAfter += result.bytesAfter;
    if (calib) {
        result.calibrationTokens = calib->tokens;
        result.calibrationChunks = calib->nChunks;
    }
    result.total.finish();
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

}  // namespace qz

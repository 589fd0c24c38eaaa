#include "jobs/quantize_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <regex>

#include "model/convert.h"
#include "quant/llm_int8.h"

namespace qz {

namespace {
bool isWeightLike(const TensorInfo& t) {
    const auto& tr = traits(t.dtype);
    return (tr.isFloat || tr.isQuantized) && canConvertToF32(t.dtype) && t.numel() > 0;
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
    r.name = t.name;
    r.shape = t.shape;
    r.dtype = t.dtype;
    r.numel = t.numel();
    r.bytesBefore = t.nbytes;
    r.bitsPerWeight = r.numel ? 8.0 * static_cast<double>(r.bytesAfter) / static_cast<double>(r.numel) : 0;
    r.error = errorStats(x.data(), y.data(), x.size());
    r.range = minMaxF32(x.data(), x.size());
    double lo = r.range.min, hi = r.range.max;
    if (!(hi > lo)) {  // constant tensor: give the histogram some width
        lo -= 0.5;
        hi += 0.5;
    }
    r.histOriginal = histogramF32(x.data(), x.size(), bins, lo, hi);
    r.histDequantized = histogramF32(y.data(), y.size(), bins, lo, hi);
    // Error histogram, symmetric around zero. Reuse y as scratch for deq - orig.
    const double e = r.error.maxAbs > 0 ? r.error.maxAbs : 1e-12;
    std::vector<float> errBuf;
    std::vector<float>& err = dequantized ? errBuf : y;
    if (dequantized) errBuf.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) err[i] = y[i] - x[i];
    r.histError = histogramF32(err.data(), err.size(), bins, -e, e);
    return r;
}

Result<QuantizeResult> runQuantize(const Model& model, const QuantizeParams& params, const ProgressFn& progress,
                                   const std::function<void(const TensorQuantResult&)>& onTensor) {
    const auto start = std::chrono::steady_clock::now();
    if (auto st = params.spec.validate(); !st) return st.error();
    const auto& hs = params.modelHistogram;
    if (hs.bins < 1 || hs.bins > 100000 || !(hs.hi > hs.lo))
        return makeError("histogram needs 1..100000 bins and lo < hi");
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

    QuantizeResult result;
    result.spec = params.spec;
    result.modelOriginal = Histogram(hs.bins, hs.lo, hs.hi);
    result.modelDequantized = Histogram(hs.bins, hs.lo, hs.hi);
    double totalWork = 0;
    for (size_t i : *sel) totalWork += static_cast<double>(model.tensors[i].numel());
    ProgressTracker tracker(tensorProgress, totalWork);
    std::vector<bool> selected(model.tensors.size(), false);
    for (size_t i : *sel) selected[i] = true;

    std::vector<float> orig, deq;
    for (size_t idx : *sel) {
        const TensorInfo& t = model.tensors[idx];
        if (!tracker.advance(0, t.name)) return cancelledError();  // announce the tensor; sees a cancel
        auto tr = analyzeTensor(model, idx, params.spec, params.tensorBins, &deq, nullptr, &orig,
                                calib ? &*calib : nullptr);
        if (!tr) return Error{model.path + ": " + t.name + ": " + tr.error().message, false};
        result.modelOriginal.merge(histogramF32(orig.data(), orig.size(), hs.bins, hs.lo, hs.hi));
        result.modelDequantized.merge(histogramF32(deq.data(), deq.size(), hs.bins, hs.lo, hs.hi));
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

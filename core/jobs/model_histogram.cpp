#include "jobs/model_histogram.h"

#include <chrono>
#include <vector>

#include "stats/robust_range.h"

namespace qz {

namespace {

// The stored bytes of a 16-bit or F32 tensor when they can be read in place (aligned, complete).
std::span<const uint8_t> rawValues(const Model& model, const TensorInfo& t) {
    if (t.dtype != DType::F16 && t.dtype != DType::BF16 && t.dtype != DType::F32) return {};
    const std::span<const uint8_t> raw = model.rawBytes(t);
    const uint64_t width = t.dtype == DType::F32 ? 4 : 2;
    if (raw.size() / width < t.numel() || reinterpret_cast<uintptr_t>(raw.data()) % width != 0) return {};
    return raw;
}

}  // namespace

Result<ModelHistogramResult> computeModelHistogram(const Model& model, const ModelHistogramParams& params,
                                                   ProgressFn progress) {
    const auto start = std::chrono::steady_clock::now();
    const HistogramSpec& hs = params.spec;
    if (hs.bins < 1 || hs.bins > 100000) return makeError("histogram bins must be 1..100000");
    if (hs.mode == HistogramRangeMode::Fixed && !(hs.lo < hs.hi))
        return makeError("histogram range: lo must be below hi");
    auto sel = params.filter.select(model);
    if (!sel) return sel.error();

    double totalWork = 0;
    for (size_t i : *sel) totalWork += static_cast<double>(model.tensors[i].numel());
    constexpr double kScanShare = 0.1;
    const bool robust = hs.mode == HistogramRangeMode::Robust;
    ProgressTracker tracker(progress, totalWork * (robust ? 1.0 + kScanShare : 1.0));

    std::vector<float> buf;
    // The values of one tensor as F32 (only for types that cannot be read in place).
    auto widened = [&](const TensorInfo& t) -> Status {
        buf.resize(t.numel());
        if (auto st = readTensorF32(model, t, buf); !st)
            return makeError(model.path + ": " + t.name + ": " + st.error().message);
        return okStatus();
    };

    ValueRange range{hs.lo, hs.hi};
    if (robust) {
        ValueSketch sketch;
        for (size_t idx : *sel) {
            const TensorInfo& t = model.tensors[idx];
            if (!tracker.advance(0, "scanning " + t.name)) return cancelledError();
            const auto raw = rawValues(model, t);
            bool counted = false;
            if (!raw.empty() && t.dtype != DType::F32) counted = sketch.addRaw(t.dtype, raw.data(), t.numel());
            if (!counted) {
                if (!raw.empty()) {
                    sketch.add(reinterpret_cast<const float*>(raw.data()), t.numel());
                } else {
                    if (auto st = widened(t); !st) return st.error();
                    sketch.add(buf.data(), buf.size());
                }
            }
            if (!tracker.advance(kScanShare * static_cast<double>(t.numel()), "scanning " + t.name))
                return cancelledError();
        }
        range = robustRange(sketch, hs.tail);
    }

    ModelHistogramResult result;
    result.histogram = Histogram(hs.bins, range.lo, range.hi);
    for (size_t idx : *sel) {
        const TensorInfo& t = model.tensors[idx];
        if (!tracker.advance(0, t.name)) return cancelledError();
        const auto raw = rawValues(model, t);
        if (!raw.empty()) {
            result.histogram.merge(histogramRaw(t.dtype, raw.data(), t.numel(), hs.bins, range.lo, range.hi));
        } else {
            if (auto st = widened(t); !st) return st.error();
            result.histogram.merge(histogramF32(buf.data(), buf.size(), hs.bins, range.lo, range.hi));
        }
        ++result.tensors;
        result.values += t.numel();
        if (!tracker.advance(static_cast<double>(t.numel()), t.name)) return cancelledError();
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

}  // namespace qz

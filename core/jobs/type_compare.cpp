#include "jobs/type_compare.h"

#include "convert/hf_to_gguf.h"
#include "ggml/dequantize.h"
#include "ggml/quantize.h"
#include "model/convert.h"

namespace qz {

TypeComparison compareTypes(const std::vector<float>& values, int64_t rows, int64_t cols,
                            const std::vector<DType>& types, int bins, const float* imatrix,
                            const ProgressFn& progress) {
    TypeComparison out;
    out.ne = {cols, rows};
    const MinMax mm = minMaxF32(values.data(), values.size());
    double lo = mm.min, hi = mm.max;
    if (!(hi > lo)) lo -= 0.5, hi += 0.5;
    out.original = histogramF32(values.data(), values.size(), bins, lo, hi);
    std::vector<uint8_t> bytes;
    std::vector<float> back(values.size());
    ProgressTracker tracker(progress, static_cast<double>(types.size()));
    for (DType t : types) {
        TypeVariant v;
        v.type = t;
        const auto rowBytes = bytesFor(t, static_cast<uint64_t>(cols));
        if (!rowBytes || !ggml::canQuantizeTo(t) || !canConvertToF32(t)) {
            v.supported = false;
            out.variants.push_back(std::move(v));
            continue;
        }
        v.bytes = *rowBytes * static_cast<uint64_t>(rows);
        v.bitsPerWeight = values.empty() ? 0 : 8.0 * static_cast<double>(v.bytes) / static_cast<double>(values.size());
        bytes.resize(v.bytes);
        if (!ggml::quantizeTensor(t, values.data(), rows, cols, imatrix, bytes.data(), 0) ||
            !convertToF32(t, bytes.data(), values.size(), back.data())) {
            v.supported = false;
        } else {
            v.error = errorStats(values.data(), back.data(), values.size());
            v.histogram = histogramF32(back.data(), back.size(), bins, lo, hi);
        }
        out.variants.push_back(std::move(v));
        if (!tracker.advance(1, std::string(dtypeName(t)))) break;
    }
    return out;
}

Result<TypeComparison> compareTensorTypes(const Model& model, const std::string& tensorName,
                                          const std::vector<DType>& types, int bins, const ProgressFn& progress) {
    const TensorInfo* info = model.find(tensorName);
    if (!info) return makeError(model.path + ": no tensor named '" + tensorName + "'");
    if (info->shape.size() < 2) return makeError(tensorName + " is not a matrix");
    std::vector<float> values;
    int64_t cols = info->cols();
    if (model.format != ModelFormat::Gguf && !model.configJson.empty()) {
        // The GGUF layout of a HF tensor (GPT-2's Conv1D weights are transposed there).
        auto plan = planHfToGguf(model);
        if (plan) {
            for (const auto& p : plan->tensors) {
                if (!p.generated.empty() || model.tensors[p.source].name != tensorName) continue;
                if (auto st = produceTensor(model, *plan, p, values); !st) return st.error();
                cols = p.ne[0];
                break;
            }
        }
    }
    if (values.empty()) {
        auto v = readTensorF32(model, *info);
        if (!v) return v.error();
        values = std::move(*v);
    }
    const int64_t rows = cols ? static_cast<int64_t>(values.size()) / cols : 0;
    TypeComparison c = compareTypes(values, rows, cols, types, bins, nullptr, progress);
    c.tensor = tensorName;
    return c;
}

}  // namespace qz

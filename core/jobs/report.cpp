#include "jobs/report.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

namespace qz {

namespace {
using json = nlohmann::ordered_json;

json finiteOrNull(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json errorJson(const ErrorStats& e) {
    return json{{"mse", e.mse}, {"max_abs_error", e.maxAbs}, {"sqnr_db", finiteOrNull(e.sqnrDb)},
                {"cosine_similarity", e.cosine}};
}

json histJson(const Histogram& h) {
    return json{{"lo", h.lo}, {"hi", h.hi}, {"bins", h.bins()}, {"counts", h.counts},
                {"below", h.below}, {"above", h.above}, {"non_finite", h.nonFinite}};
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}
}  // namespace

std::string reportJson(const Model& model, const QuantizeResult& r) {
    json j;
    j["quantzoo_report_version"] = 1;
    j["model"] = {{"path", model.path}, {"name", model.name}, {"architecture", model.architecture},
                  {"parameters", model.totalParameters()}, {"bytes", model.totalBytes()}};
    j["method"] = {{"method", std::string(methodName(r.spec.method))}, {"bits", r.spec.bits},
                   {"granularity", std::string(granularityName(r.spec.granularity))}};
    if (isBnbFourBit(r.spec.method)) {
        j["method"]["bits"] = effectiveBits(r.spec);
        j["method"].erase("granularity");
        j["method"]["block_size"] = r.spec.blockSize;
        j["method"]["double_quant"] = r.spec.doubleQuant;
        j["method"]["code_values"] = codeValues(r.spec);
    } else if (r.spec.method == QuantMethod::LlmInt8) {
        j["method"]["bits"] = effectiveBits(r.spec);
        j["method"]["granularity"] = "row";
        j["method"]["threshold"] = r.spec.threshold;
        j["method"]["outlier_dtype"] = "F16";
        j["method"]["row_scale_dtype"] = "F32";
        j["method"]["calibration"] = {{"path", r.spec.calibrationPath}, {"tokens", r.calibrationTokens},
                                      {"chunks", r.calibrationChunks}, {"context", r.spec.calibCtx}};
    } else if (r.spec.granularity == Granularity::Group) {
        j["method"]["group_size"] = r.spec.groupSize;
    }
    j["summary"] = {{"tensors_quantized", r.tensors.size()},
                    {"parameters_quantized", r.quantizedParams},
                    {"bytes_before", r.bytesBefore},
                    {"bytes_after", r.bytesAfter},
                    {"model_bytes_before", r.modelBytesBefore},
                    {"model_bytes_after", r.modelBytesAfter},
                    {"bits_per_weight_after",
                     r.quantizedParams ? 8.0 * static_cast<double>(r.bytesAfter) / static_cast<double>(r.quantizedParams) : 0.0},
                    {"error", errorJson(r.total)},
                    {"seconds", r.seconds}};
    if (r.spec.method == QuantMethod::LlmInt8) j["summary"]["outlier_columns"] = r.outlierColumns;
    j["histograms"] = {{"original", histJson(r.modelOriginal)}, {"dequantized", histJson(r.modelDequantized)}};
    json tensors = json::array();
    for (const auto& t : r.tensors) {
        tensors.push_back({{"name", t.name}, {"shape", t.shape}, {"dtype", std::string(dtypeName(t.dtype))},
                           {"parameters", t.numel}, {"bytes_before", t.bytesBefore},
                           {"bytes_after", t.bytesAfter}, {"bits_per_weight", t.bitsPerWeight},
                           {"min", t.range.min}, {"max", t.range.max}, {"error", errorJson(t.error)}});
        if (t.outlierColumns >= 0) {
            auto& e = tensors.back();
            e["input_features"] = t.inputFeatures;
            e["outlier_columns"] = t.outlierColumns;
            e["outlier_features"] = t.outlierFeatures;
            e["outlier_bytes"] = t.outlierBytes;
            e["max_activation"] = t.maxActivation >= 0 ? json(t.maxActivation) : json(nullptr);
        }
        if (!t.notes.empty()) tensors.back()["notes"] = t.notes;
    }
    j["tensors"] = std::move(tensors);
    return j.dump(2) + "\n";
}

std::string reportMarkdown(const Model& model, const QuantizeResult& r) {
    std::ostringstream o;
    o << "# QuantZoo report: " << model.name << "\n\n";
    o << "- Model: `" << model.path << "` (" << (model.architecture.empty() ? "unknown architecture" : model.architecture)
      << ", " << model.totalParameters() << " parameters, " << model.totalBytes() << " bytes)\n";
    o << "- Method: " << r.spec.describe() << "\n";
    o << "- Tensors quantized: " << r.tensors.size() << " (" << r.quantizedParams << " parameters)\n";
    o << "- Size of the quantized tensors: " << r.bytesBefore << " → " << r.bytesAfter << " bytes ("
      << fmt("%.3f", r.quantizedParams ? 8.0 * r.bytesAfter / r.quantizedParams : 0.0) << " bits per weight)\n";
    if (r.spec.method == QuantMethod::LlmInt8) {
        uint64_t ob = 0;
        for (const auto& t : r.tensors) ob += t.outlierBytes;
        o << "- Calibration: " << r.calibrationChunks << " chunks, " << r.calibrationTokens << " tokens; "
          << r.outlierColumns << " outlier columns kept in fp16 (" << ob << " bytes incl. indices)\n";
    }
    o << "- Whole model: " << r.modelBytesBefore << " → " << r.modelBytesAfter << " bytes\n";
    o << "- Overall error: MSE " << fmt("%.4g", r.total.mse) << ", max |err| " << fmt("%.4g", r.total.maxAbs)
      << ", SQNR " << fmt("%.2f", r.total.sqnrDb) << " dB, cosine " << fmt("%.6f", r.total.cosine) << "\n";
    o << "- Time: " << fmt("%.2f", r.seconds) << " s\n\n";
    o << "| tensor | shape | dtype | bytes before | bytes after | bpw | MSE | max abs err | SQNR dB | cosine |\n";
    o << "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& t : r.tensors) {
        std::string shape;
        for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "×" : "") + std::to_string(t.shape[i]);
        o << "| `" << t.name << "` | " << shape << " | " << dtypeName(t.dtype) << " | " << t.bytesBefore << " | "
          << t.bytesAfter << " | " << fmt("%.3f", t.bitsPerWeight) << " | " << fmt("%.3e", t.error.mse) << " | "
          << fmt("%.3e", t.error.maxAbs) << " | " << fmt("%.2f", t.error.sqnrDb) << " | "
          << fmt("%.6f", t.error.cosine) << " |\n";
    }
    if (r.spec.method == QuantMethod::LlmInt8) {
        o << "\n| tensor | input features | outlier columns | outlier bytes | max calibration abs(x) | notes |\n";
        o << "|---|---:|---:|---:|---:|---|\n";
        for (const auto& t : r.tensors)
            o << "| `" << t.name << "` | " << t.inputFeatures << " | " << t.outlierColumns << " | " << t.outlierBytes
              << " | " << (t.maxActivation >= 0 ? fmt("%.3f", t.maxActivation) : std::string("-")) << " | "
              << t.notes << " |\n";
    }
    return o.str();
}

}  // namespace qz

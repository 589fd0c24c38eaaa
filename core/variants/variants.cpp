#include "variants/variants.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/file_util.h"
#include "common/safe_file.h"
#include "convert/hf_to_gguf.h"
#include "ggml/mixes.h"
#include "quant/llm_int8.h"
#include "variants/exl2_reader.h"
#include "variants/gptq_reader.h"
#include "variants/row_sources.h"

namespace qz {

namespace fs = std::filesystem;
using nlohmann::json;

std::string_view variantKindName(VariantKind k) {
    switch (k) {
    case VariantKind::FakeQuant:
        return "fake-quant";
    case VariantKind::GgufFile:
        return "gguf";
    case VariantKind::GptqFolder:
        return "gptq";
    case VariantKind::Exl2Folder:
        return "exl2";
    }
    return "?";
}

std::optional<VariantKind> parseVariantKind(std::string_view s) {
    for (VariantKind k :
         {VariantKind::FakeQuant, VariantKind::GgufFile, VariantKind::GptqFolder, VariantKind::Exl2Folder})
        if (variantKindName(k) == s) return k;
    return std::nullopt;
}

const VariantTensor* Variant::find(std::string_view tensorName) const {
    for (const auto& t : tensors)
        if (t.name == tensorName) return &t;
    return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// Method specs

namespace {
std::vector<std::string_view> splitColon(std::string_view s) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (true) {
        const size_t p = s.find(':', start);
        parts.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
        if (p == std::string_view::npos) break;
        start = p + 1;
    }
    return parts;
}

std::optional<int> parseInt(std::string_view s) {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}
} // namespace

Result<QuantSpec> parseMethodSpec(std::string_view text) {
    const auto parts = splitColon(text);
    const std::string whole = printableText(text);
    QuantSpec spec;
    std::string_view method = parts[0];
    if (method == "nf4-dq" || method == "fp4-dq") {
        spec.doubleQuant = true;
        method = method.substr(0, 3);
    }
    auto m = parseMethod(method);
    if (!m)
        return makeError("variant '" + whole +
                         "': unknown method (absmax, zeropoint, nf4, fp4, nf4-dq, fp4-dq, llm-int8)");
    spec.method = *m;
    if (isBnbFourBit(spec.method)) {
        if (parts.size() > 2)
            return makeError("variant '" + whole + "': expected " + std::string(method) + "[:BLOCK]");
        if (parts.size() == 2) {
            auto b = parseInt(parts[1]);
            if (!b) return makeError("variant '" + whole + "': block size is not an integer");
            spec.blockSize = *b;
        }
    } else if (spec.method == QuantMethod::LlmInt8) {
        if (parts.size() > 2) return makeError("variant '" + whole + "': expected llm-int8[:THRESHOLD]");
        if (parts.size() == 2) {
            char* end = nullptr;
            const std::string t(parts[1]);
            const float v = std::strtof(t.c_str(), &end);
            if (t.empty() || *end || !std::isfinite(v) || v <= 0)
                return makeError("variant '" + whole + "': threshold must be a positive number");
            spec.threshold = v;
        }
    } else {
        if (parts.size() < 2 || parts.size() > 4)
            return makeError("variant '" + whole + "': expected " + std::string(method) +
                             ":BITS[:tensor|row|group[:G]]");
        auto b = parseInt(parts[1]);
        if (!b) return makeError("variant '" + whole + "': bits is not an integer");
        spec.bits = *b;
        if (parts.size() >= 3) {
            auto g = parseGranularity(parts[2]);
            if (!g) return makeError("variant '" + whole + "': granularity must be tensor, row or group");
            spec.granularity = *g;
        }
        if (parts.size() == 4) {
            if (spec.granularity != Granularity::Group)
                return makeError("variant '" + whole + "': a group size needs the group granularity");
            auto g = parseInt(parts[3]);
            if (!g) return makeError("variant '" + whole + "': group size is not an integer");
            spec.groupSize = *g;
        }
    }
    if (auto st = spec.validate(); !st) return makeError("variant '" + whole + "': " + st.error().message);
    return spec;
}

std::string methodSpecString(const QuantSpec& spec) {
    std::string s(methodName(spec.method));
    if (isBnbFourBit(spec.method)) {
        if (spec.doubleQuant) s += "-dq";
        return s + ":" + std::to_string(spec.blockSize);
    }
    if (spec.method == QuantMethod::LlmInt8) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", double(spec.threshold));
        return s + ":" + buf;
    }
    s += ":" + std::to_string(spec.bits) + ":" + std::string(granularityName(spec.granularity));
    if (spec.granularity == Granularity::Group) s += ":" + std::to_string(spec.groupSize);
    return s;
}

double modelBitsPerWeight(const Model& model) {
    const uint64_t p = model.totalParameters();
    return p ? 8.0 * double(model.totalBytes()) / double(p) : 0.0;
}

// ---------------------------------------------------------------------------------------------------
// Making variants

Variant variantFromQuantizeResult(const Model& original, const QuantizeResult& result, std::string name) {
    Variant v;
    v.kind = VariantKind::FakeQuant;
    v.spec = result.spec;
    v.label = result.spec.describe();
    v.name = name.empty() ? v.label : std::move(name);
    v.bytes = result.modelBytesAfter;
    v.parameters = original.totalParameters();
    v.bitsPerWeight = v.parameters ? 8.0 * double(v.bytes) / double(v.parameters) : 0;
    for (const auto& t : result.tensors) {
        VariantTensor vt;
        vt.name = t.name;
        vt.numel = t.numel;
        vt.bytes = t.bytesAfter;
        vt.bitsPerWeight = t.bitsPerWeight;
        vt.error = t.error;
        vt.layer = layerIndexOf(t.name);
        v.tensors.push_back(std::move(vt));
        if (result.spec.method == QuantMethod::LlmInt8) v.outlierFeatures[t.name] = t.outlierFeatures;
    }
    return v;
}

Result<Variant> makeFakeQuantVariant(const Model& original, const QuantSpec& spec, const ProgressFn& progress,
                                     int threads) {
    QuantizeParams p;
    p.spec = spec;
    p.filter.mode = TensorSelection::All2D;
    p.tensorBins = 16;
    p.modelHistogram.bins = 16;
    p.threads = threads;
    auto r = runQuantize(original, p, progress);
    if (!r) return r.error();
    return variantFromQuantizeResult(original, *r);
}

namespace {

// Where each original tensor lives in a GGUF conversion of it: the GGUF name and the transform.
struct GgufMapping {
    std::optional<ConversionPlan> plan;      // HF originals
    std::map<std::string, size_t> planIndex; // original name -> plan.tensors index
};

Result<GgufMapping> ggufMapping(const Model& original) {
    GgufMapping m;
    if (original.format == ModelFormat::Gguf) return m; // same names
    auto plan = planHfToGguf(original);
    if (!plan)
        return makeError("cannot relate GGUF tensors to " + original.name + ": " + plan.error().message);
    m.plan = std::move(*plan);
    for (size_t i = 0; i < m.plan->tensors.size(); ++i) {
        const auto& t = m.plan->tensors[i];
        if (!t.generated.empty() || !t.stacked.empty() || t.source >= original.tensors.size()) continue;
        m.planIndex[original.tensors[t.source].name] = i;
    }
    return m;
}

std::string ggufNameOf(const GgufMapping& map, const std::string& originalName) {
    if (!map.plan) return originalName;
    auto it = map.planIndex.find(originalName);
    return it == map.planIndex.end() ? std::string() : map.plan->tensors[it->second].ggufName;
}

// The original tensor in the variant's layout (GGUF conversion for a HF original).
Status readOriginalFor(const Model& original, const GgufMapping& map, size_t index, std::vector<float>& out) {
    const TensorInfo& t = original.tensors[index];
    if (map.plan) {
        auto it = map.planIndex.find(t.name);
        if (it == map.planIndex.end()) return makeError(t.name + " has no GGUF counterpart");
        return produceTensor(original, *map.plan, map.plan->tensors[it->second], out);
    }
    out.resize(t.numel());
    return readTensorF32(original, t, out);
}

std::string ggufLabel(const Model& m) {
    for (const auto& kv : m.metadata)
        if (kv.key == "general.file_type") {
            int v = 0;
            auto [p, ec] = std::from_chars(kv.value.data(), kv.value.data() + kv.value.size(), v);
            if (ec == std::errc())
                if (const auto* info = ggml::fileTypeInfo(ggml::FileType(v))) return std::string(info->name);
        }
    return "GGUF";
}

} // namespace

Result<Variant> openFileVariant(const Model& original, const std::string& path, const ProgressFn& progress) {
    Variant v;
    v.path = path;
    v.name = fs::path(path).filename().string();
    if (v.name.empty()) v.name = fs::path(path).parent_path().filename().string();
    v.parameters = original.totalParameters();
    std::optional<GptqFolder> gptq;
    std::optional<Exl2Folder> exl2;
    std::shared_ptr<Model> file;
    if (looksLikeExl2Folder(path)) {
        auto e = openExl2Folder(path, original);
        if (!e) return e.error();
        exl2 = std::move(*e);
        v.kind = VariantKind::Exl2Folder;
        char buf[64];
        std::snprintf(buf, sizeof buf, "EXL2 %.2f bpw", exl2->bits);
        v.label = exl2->bits > 0 ? std::string(buf) : std::string("EXL2");
        if (exl2->headBits > 0) v.label += " h" + std::to_string(exl2->headBits);
    } else if (looksLikeGptqFolder(path)) {
        auto g = openGptqFolder(path);
        if (!g) return g.error();
        gptq = std::move(*g);
        v.kind = VariantKind::GptqFolder;
        v.label = "GPTQ " + std::to_string(gptq->bits) + "-bit" +
                  (gptq->groupSize > 0 ? " g" + std::to_string(gptq->groupSize) : std::string());
    } else {
        auto m = openModel(path);
        if (!m) return m.error();
        if ((*m)->format != ModelFormat::Gguf)
            return makeError(path + ": not a GGUF file, a GPTQ folder or an EXL2 folder (a variant is a "
                                    "quantized file of the model)");
        file = std::move(*m);
        v.kind = VariantKind::GgufFile;
        v.label = ggufLabel(*file);
    }
    GgufMapping map;
    if (file) {
        auto mp = ggufMapping(original);
        if (!mp) return mp.error();
        map = std::move(*mp);
    }
    uint64_t bytes = 0, matchedElems = 0;
    std::vector<float> orig;
    const size_t n = original.tensors.size();
    for (size_t i = 0; i < n; ++i) {
        const TensorInfo& t = original.tensors[i];
        if (progress && !progress({double(i) / double(std::max<size_t>(1, n)), "comparing " + t.name}))
            return cancelledError();
        std::vector<float> deq;
        uint64_t tbytes = 0;
        bool quantized = false;
        if (exl2 || gptq) {
            if (exl2 && t.shape.size() != 2 && exl2->model->find(t.name) == nullptr) {
                bytes += t.nbytes; // not a linear's weight and not in the folder
                continue;
            }
            // The folder's tensor (either reader gives found / values / bytes / quantized).
            bool found = false;
            auto take = [&](auto&& r) -> Status {
                if (!r) return r.error();
                if (!r->found) return okStatus();
                if (r->values.size() != t.numel())
                    return makeError(path + ": " + t.name + " has another size than the original's");
                found = true;
                tbytes = r->bytes;
                quantized = r->quantized;
                deq = std::move(r->values);
                return okStatus();
            };
            const int64_t out = t.shape.size() == 2 ? t.shape[0] : 0, in = t.shape.size() == 2 ? t.shape[1] : 0;
            if (auto st = exl2 ? take(readExl2Weight(*exl2, t.name, out, in)) : take(readGptqWeight(*gptq, t.name));
                !st)
                return st.error();
            if (!found) {
                bytes += t.nbytes; // a tensor the folder lacks (e.g. a tied head) counts as the original's
                continue;
            }
            orig.resize(t.numel());
            if (auto st = readTensorF32(original, t, orig); !st) return st.error();
        } else {
            const std::string gname = ggufNameOf(map, t.name);
            const TensorInfo* g = gname.empty() ? nullptr : file->find(gname);
            if (!g) continue;
            if (g->numel() != t.numel())
                return makeError(path + ": " + gname + " has " + std::to_string(g->numel()) +
                                 " values, the original's " + t.name + " " + std::to_string(t.numel()));
            tbytes = g->nbytes;
            quantized = t.shape.size() >= 2;
            auto d = readTensorF32(*file, *g);
            if (!d) return d.error();
            deq = std::move(*d);
            if (auto st = readOriginalFor(original, map, i, orig); !st) return st.error();
            if (orig.size() != deq.size())
                return makeError(path + ": " + gname + ": size mismatch after conversion");
        }
        bytes += tbytes;
        matchedElems += t.numel();
        if (!quantized) continue; // only the weight matrices get figures (as a fake-quantized run)
        VariantTensor vt;
        vt.name = t.name;
        vt.numel = t.numel();
        vt.bytes = tbytes;
        vt.bitsPerWeight = vt.numel ? 8.0 * double(tbytes) / double(vt.numel) : 0;
        vt.error = errorStats(orig.data(), deq.data(), deq.size());
        vt.layer = layerIndexOf(t.name);
        v.tensors.push_back(std::move(vt));
    }
    if (matchedElems == 0)
        return makeError(path + ": none of its tensors matches a tensor of " + original.name);
    // A GGUF file's size counts all its tensors (also ones the original lacks, e.g. rope_freqs).
    v.bytes = file ? file->totalBytes() : bytes;
    v.bitsPerWeight = v.parameters ? 8.0 * double(v.bytes) / double(v.parameters) : 0;
    if (progress && !progress({1.0, "compared"})) return cancelledError();
    return v;
}

// ---------------------------------------------------------------------------------------------------
// Values on demand

namespace {
Result<size_t> originalIndex(const Model& original, const std::string& tensorName) {
    const TensorInfo* t = original.find(tensorName);
    if (!t) return makeError(original.name + " has no tensor " + tensorName);
    return size_t(t - original.tensors.data());
}

// Re-runs the variant's method on one tensor of the original (deterministic).
Status fakeQuantTensor(const Model& original, const Variant& v, size_t index, std::vector<float>& orig,
                       std::vector<float>& deq) {
    if (v.spec.method == QuantMethod::LlmInt8) {
        const TensorInfo& t = original.tensors[index];
        orig.resize(t.numel());
        if (auto st = readTensorF32(original, t, orig); !st) return st;
        deq.resize(orig.size());
        static const std::vector<int32_t> kNone;
        auto it = v.outlierFeatures.find(t.name);
        const auto& outliers = it == v.outlierFeatures.end() ? kNone : it->second;
        llmInt8QuantizeDequantize(orig.data(), t.rows(), t.cols(), weightInputIsRows(t.name), outliers,
                                  deq.data());
        return okStatus();
    }
    auto r = analyzeTensor(original, index, v.spec, 16, &deq, nullptr, &orig);
    if (!r) return r.error();
    return okStatus();
}
} // namespace

Result<TensorPair> variantTensorPair(const Model& original, const Variant& v, const std::string& tensorName) {
    auto idx = originalIndex(original, tensorName);
    if (!idx) return idx.error();
    const TensorInfo& t = original.tensors[*idx];
    TensorPair p;
    p.shape = t.shape;
    switch (v.kind) {
    case VariantKind::FakeQuant:
        if (!v.find(tensorName)) return makeError(v.name + " did not quantize " + tensorName);
        if (auto st = fakeQuantTensor(original, v, *idx, p.original, p.variant); !st) return st.error();
        return p;
    case VariantKind::Exl2Folder: {
        auto e = openExl2Folder(v.path, original);
        if (!e) return e.error();
        if (t.shape.size() != 2 && !e->model->find(tensorName))
            return makeError(v.path + " has no tensor " + tensorName);
        auto r = readExl2Weight(*e, tensorName, t.shape.size() == 2 ? t.shape[0] : 0,
                                t.shape.size() == 2 ? t.shape[1] : 0);
        if (!r) return r.error();
        if (!r->found || r->values.size() != t.numel())
            return makeError(v.path + " has no tensor " + tensorName);
        p.variant = std::move(r->values);
        p.original.resize(t.numel());
        if (auto st = readTensorF32(original, t, p.original); !st) return st.error();
        return p;
    }
    case VariantKind::GptqFolder: {
        auto g = openGptqFolder(v.path);
        if (!g) return g.error();
        auto r = readGptqWeight(*g, tensorName);
        if (!r) return r.error();
        if (!r->found || r->values.size() != t.numel())
            return makeError(v.path + " has no tensor " + tensorName);
        p.variant = std::move(r->values);
        p.original.resize(t.numel());
        if (auto st = readTensorF32(original, t, p.original); !st) return st.error();
        return p;
    }
    case VariantKind::GgufFile: {
        auto m = openModel(v.path);
        if (!m) return m.error();
        auto map = ggufMapping(original);
        if (!map) return map.error();
        const std::string gname = ggufNameOf(*map, tensorName);
        const TensorInfo* g = gname.empty() ? nullptr : (*m)->find(gname);
        if (!g || g->numel() != t.numel()) return makeError(v.path + " has no tensor matching " + tensorName);
        auto d = readTensorF32(**m, *g);
        if (!d) return d.error();
        p.variant = std::move(*d);
        if (auto st = readOriginalFor(original, *map, *idx, p.original); !st) return st.error();
        if (p.original.size() != p.variant.size()) return makeError(v.path + ": size mismatch");
        return p;
    }
    }
    return makeError("unknown variant kind");
}

Result<VariantRunnable> variantRunnable(const std::shared_ptr<const Model>& original, const Variant& v,
                                        const ProgressFn& progress, bool withSources) {
    VariantRunnable r;
    if (v.kind == VariantKind::GgufFile) {
        auto m = openModel(v.path);
        if (!m) return m.error();
        r.model = std::move(*m);
        return r;
    }
    r.model = original;
    std::optional<GptqFolder> gptq;
    std::optional<Exl2Folder> exl2;
    if (v.kind == VariantKind::GptqFolder) {
        auto g = openGptqFolder(v.path);
        if (!g) return g.error();
        gptq = std::move(*g);
    } else if (v.kind == VariantKind::Exl2Folder) {
        auto e = openExl2Folder(v.path, *original);
        if (!e) return e.error();
        exl2 = std::move(*e);
    }
    static const std::vector<int32_t> kNone;
    const size_t n = v.tensors.size();
    for (size_t i = 0; i < n; ++i) {
        const std::string& name = v.tensors[i].name;
        if (progress && !progress({double(i) / double(std::max<size_t>(1, n)), "preparing " + name}))
            return cancelledError();
        auto idx = originalIndex(*original, name);
        if (!idx) return idx.error();
        const TensorInfo& t = original->tensors[*idx];
        const int64_t out = t.shape.size() == 2 ? t.shape[0] : 0, in = t.shape.size() == 2 ? t.shape[1] : 0;
        if (withSources) { // the compact form, decoded row by row while the engine computes
            Result<std::shared_ptr<const WeightRowSource>> src = std::shared_ptr<const WeightRowSource>();
            if (gptq)
                src = gptqRowSource(*gptq, name);
            else if (exl2)
                src = exl2RowSource(*exl2, name, out, in);
            else {
                auto of = v.outlierFeatures.find(name);
                src = fakeQuantRowSource(original, *idx, v.spec,
                                         of == v.outlierFeatures.end() ? kNone : of->second);
            }
            if (!src) return src.error();
            if (*src) {
                r.sources[name] = std::move(*src);
                continue;
            }
        }
        std::vector<float> orig, deq;
        if (gptq) {
            auto g = readGptqWeight(*gptq, name);
            if (!g) return g.error();
            if (!g->found) continue;
            deq = std::move(g->values);
        } else if (exl2) {
            auto e = readExl2Weight(*exl2, name, out, in);
            if (!e) return e.error();
            if (!e->found) continue;
            deq = std::move(e->values);
        } else if (auto st = fakeQuantTensor(*original, v, *idx, orig, deq); !st) {
            return st.error();
        }
        r.overrides[name] = std::move(deq);
    }
    if (progress && !progress({1.0, "prepared"})) return cancelledError();
    return r;
}

std::vector<std::pair<int, ErrorStats>> perLayerError(const Variant& v) {
    std::map<int, ErrorStats> layers;
    for (const auto& t : v.tensors) {
        ErrorStats& e = layers[t.layer < 0 ? -1 : t.layer];
        e.merge(t.error);
    }
    std::vector<std::pair<int, ErrorStats>> out(layers.begin(), layers.end());
    return out;
}

std::vector<size_t> paretoFront(const std::vector<double>& x, const std::vector<double>& y) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)
        if (std::isfinite(x[i]) && std::isfinite(y[i])) idx.push_back(i);
    std::sort(idx.begin(), idx.end(),
              [&](size_t a, size_t b) { return x[a] != x[b] ? x[a] < x[b] : y[a] < y[b]; });
    std::vector<size_t> front;
    double best = INFINITY;
    for (size_t i : idx)
        if (y[i] < best) { // sorted by x: on the front iff strictly better than every point left of it
            front.push_back(i);
            best = y[i];
        }
    return front;
}

bool isStandardMix(std::string_view label) {
    for (const auto& info : ggml::fileTypes())
        if (info.name == label) return true;
    return false;
}

// ---------------------------------------------------------------------------------------------------
// Project file

namespace {
constexpr const char* kFormat = "quantzoo-compare";
constexpr int kVersion = 1;

json errorJson(const ErrorStats& e) {
    return json{{"n", e.n},     {"sumSqOrig", e.sumSqOrig}, {"sumSqErr", e.sumSqErr},
                {"dot", e.dot}, {"sumSqDeq", e.sumSqDeq},   {"maxAbs", e.maxAbs}};
}
json evalJson(const VariantEval& e) {
    return json{{"done", e.done},       {"ppl", e.ppl},         {"pplError", e.pplError},
                {"meanKld", e.meanKld}, {"sameTop", e.sameTop}, {"tokens", e.tokens},
                {"error", e.error}};
}
json specJson(const QuantSpec& s) {
    return json{{"method", std::string(methodName(s.method))},
                {"bits", s.bits},
                {"granularity", std::string(granularityName(s.granularity))},
                {"groupSize", s.groupSize},
                {"blockSize", s.blockSize},
                {"doubleQuant", s.doubleQuant},
                {"threshold", s.threshold},
                {"calibration", s.calibrationPath},
                {"calibCtx", s.calibCtx},
                {"calibChunks", s.calibChunks}};
}

// Typed field access with errors naming the file and the field.
struct Reader {
    std::string where;
    Error err(const std::string& field, const std::string& what) const {
        return makeError(where + ": " + field + " " + what);
    }
    template <class T>
    Result<T> get(const json& o, const char* key, const std::string& ctx,
                  std::optional<T> def = std::nullopt) const {
        const std::string field = ctx + key;
        if (!o.is_object()) return err(ctx, "is not an object");
        auto it = o.find(key);
        if (it == o.end()) {
            if (def) return *def;
            return err(field, "is missing");
        }
        if constexpr (std::is_same_v<T, std::string>) {
            if (!it->is_string()) return err(field, "is not a string");
            return it->get<std::string>();
        } else if constexpr (std::is_same_v<T, bool>) {
            if (!it->is_boolean()) return err(field, "is not true / false");
            return it->get<bool>();
        } else if constexpr (std::is_integral_v<T>) {
            if (!it->is_number_integer()) return err(field, "is not an integer");
            if (it->is_number_unsigned()) {
                const auto u = it->get<uint64_t>();
                if (u > uint64_t(std::numeric_limits<T>::max())) return err(field, "is out of range");
                return T(u);
            }
            const auto s = it->get<int64_t>();
            if (s < int64_t(std::numeric_limits<T>::min()) ||
                (s > 0 && uint64_t(s) > uint64_t(std::numeric_limits<T>::max())))
                return err(field, "is out of range");
            return T(s);
        } else {
            if (!it->is_number()) return err(field, "is not a number");
            return T(it->get<double>());
        }
    }
};

#define QZ_TRY(var, expr)                                                                                    \
    auto var##_r = (expr);                                                                                   \
    if (!var##_r) return var##_r.error();                                                                    \
    auto var = std::move(*var##_r)

Result<ErrorStats> readError(const Reader& R, const json& o, const std::string& ctx) {
    ErrorStats e;
    QZ_TRY(n, R.get<uint64_t>(o, "n", ctx));
    QZ_TRY(a, R.get<double>(o, "sumSqOrig", ctx));
    QZ_TRY(b, R.get<double>(o, "sumSqErr", ctx));
    QZ_TRY(c, R.get<double>(o, "dot", ctx));
    QZ_TRY(d, R.get<double>(o, "sumSqDeq", ctx));
    QZ_TRY(m, R.get<double>(o, "maxAbs", ctx));
    e.n = n;
    e.sumSqOrig = a;
    e.sumSqErr = b;
    e.dot = c;
    e.sumSqDeq = d;
    e.maxAbs = m;
    e.finish();
    return e;
}

Result<VariantEval> readEval(const Reader& R, const json& o, const std::string& ctx) {
    VariantEval e;
    QZ_TRY(done, R.get<bool>(o, "done", ctx));
    QZ_TRY(ppl, R.get<double>(o, "ppl", ctx));
    QZ_TRY(pe, R.get<double>(o, "pplError", ctx));
    QZ_TRY(kld, R.get<double>(o, "meanKld", ctx));
    QZ_TRY(st, R.get<double>(o, "sameTop", ctx));
    QZ_TRY(tok, R.get<int64_t>(o, "tokens", ctx));
    QZ_TRY(er, R.get<std::string>(o, "error", ctx, std::string()));
    e.done = done;
    e.ppl = ppl;
    e.pplError = pe;
    e.meanKld = kld;
    e.sameTop = st;
    e.tokens = tok;
    e.error = er;
    return e;
}

Result<QuantSpec> readSpec(const Reader& R, const json& o, const std::string& ctx) {
    QuantSpec s;
    QZ_TRY(method, R.get<std::string>(o, "method", ctx));
    auto m = parseMethod(method);
    if (!m) return R.err(ctx + "method", "'" + printableText(method) + "' is not a method");
    s.method = *m;
    QZ_TRY(bits, R.get<int>(o, "bits", ctx));
    QZ_TRY(gran, R.get<std::string>(o, "granularity", ctx));
    auto g = parseGranularity(gran);
    if (!g) return R.err(ctx + "granularity", "is not tensor / row / group");
    QZ_TRY(gs, R.get<int>(o, "groupSize", ctx));
    QZ_TRY(bs, R.get<int>(o, "blockSize", ctx));
    QZ_TRY(dq, R.get<bool>(o, "doubleQuant", ctx));
    QZ_TRY(th, R.get<double>(o, "threshold", ctx));
    QZ_TRY(cal, R.get<std::string>(o, "calibration", ctx, std::string()));
    QZ_TRY(cc, R.get<int>(o, "calibCtx", ctx, 512));
    QZ_TRY(ch, R.get<int>(o, "calibChunks", ctx, 16));
    s.bits = bits;
    s.granularity = *g;
    s.groupSize = gs;
    s.blockSize = bs;
    s.doubleQuant = dq;
    s.threshold = float(th);
    s.calibrationPath = cal;
    s.calibCtx = cc;
    s.calibChunks = ch;
    if (auto st = s.validate(); !st) return R.err(ctx.substr(0, ctx.size() - 1), st.error().message);
    return s;
}
} // namespace

std::string comparisonToJson(const Comparison& c) {
    json j;
    j["format"] = kFormat;
    j["version"] = kVersion;
    j["model"] = c.modelPath;
    j["text"] = c.textPath;
    j["nCtx"] = c.nCtx;
    j["nChunks"] = c.nChunks;
    j["tensor"] = c.tensor;
    j["selected"] = c.selected;
    if (c.originalEval) j["originalEval"] = evalJson(*c.originalEval);
    json vs = json::array();
    for (const auto& v : c.variants) {
        json o;
        o["name"] = v.name;
        o["kind"] = std::string(variantKindName(v.kind));
        if (v.kind == VariantKind::FakeQuant)
            o["spec"] = specJson(v.spec);
        else
            o["path"] = v.path;
        o["label"] = v.label;
        o["bytes"] = v.bytes;
        o["parameters"] = v.parameters;
        o["bitsPerWeight"] = v.bitsPerWeight;
        o["eval"] = evalJson(v.eval);
        json ts = json::array();
        for (const auto& t : v.tensors)
            ts.push_back(json{{"name", t.name},
                              {"numel", t.numel},
                              {"bytes", t.bytes},
                              {"bitsPerWeight", t.bitsPerWeight},
                              {"error", errorJson(t.error)}});
        o["tensors"] = std::move(ts);
        if (!v.outlierFeatures.empty()) {
            json of = json::object();
            for (const auto& [name, f] : v.outlierFeatures)
                of[name] = f;
            o["outlierFeatures"] = std::move(of);
        }
        vs.push_back(std::move(o));
    }
    j["variants"] = std::move(vs);
    return j.dump(1) + "\n";
}

Result<Comparison> comparisonFromJson(std::string_view text, const std::string& where) {
    if (auto st = checkJsonDepth(text, where); !st) return st.error();
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return makeError(where + ": not a JSON object");
    Reader R{where};
    QZ_TRY(format, R.get<std::string>(j, "format", ""));
    if (format != kFormat)
        return makeError(where + ": not a QuantZoo comparison (format '" + printableText(format) + "')");
    QZ_TRY(version, R.get<int>(j, "version", ""));
    if (version != kVersion)
        return makeError(where + ": comparison version " + std::to_string(version) +
                         " (this program reads 1)");
    Comparison c;
    QZ_TRY(model, R.get<std::string>(j, "model", ""));
    QZ_TRY(textPath, R.get<std::string>(j, "text", "", std::string()));
    QZ_TRY(nCtx, R.get<int>(j, "nCtx", "", 128));
    QZ_TRY(nChunks, R.get<int>(j, "nChunks", "", 32));
    QZ_TRY(tensor, R.get<std::string>(j, "tensor", "", std::string()));
    if (nCtx < 4 || nCtx > (1 << 20)) return R.err("nCtx", "is out of range (4 .. 1048576)");
    if (nChunks < 0) return R.err("nChunks", "is negative");
    c.modelPath = model;
    c.textPath = textPath;
    c.nCtx = nCtx;
    c.nChunks = nChunks;
    c.tensor = tensor;
    if (auto it = j.find("originalEval"); it != j.end()) {
        QZ_TRY(e, readEval(R, *it, "originalEval."));
        c.originalEval = e;
    }
    auto vsIt = j.find("variants");
    if (vsIt == j.end() || !vsIt->is_array()) return R.err("variants", "is missing or not an array");
    if (vsIt->size() > 10000) return R.err("variants", "has too many entries");
    for (size_t i = 0; i < vsIt->size(); ++i) {
        const json& o = (*vsIt)[i];
        const std::string ctx = "variants[" + std::to_string(i) + "].";
        Variant v;
        QZ_TRY(name, R.get<std::string>(o, "name", ctx));
        QZ_TRY(kind, R.get<std::string>(o, "kind", ctx));
        auto k = parseVariantKind(kind);
        if (!k)
            return R.err(ctx + "kind",
                         "'" + printableText(kind) + "' is not fake-quant / gguf / gptq / exl2");
        v.name = name;
        v.kind = *k;
        if (v.kind == VariantKind::FakeQuant) {
            auto s = o.find("spec");
            if (s == o.end()) return R.err(ctx + "spec", "is missing");
            QZ_TRY(spec, readSpec(R, *s, ctx + "spec."));
            v.spec = spec;
        } else {
            QZ_TRY(path, R.get<std::string>(o, "path", ctx));
            v.path = path;
        }
        QZ_TRY(label, R.get<std::string>(o, "label", ctx, std::string()));
        QZ_TRY(bytes, R.get<uint64_t>(o, "bytes", ctx));
        QZ_TRY(params, R.get<uint64_t>(o, "parameters", ctx));
        QZ_TRY(bpw, R.get<double>(o, "bitsPerWeight", ctx));
        v.label = label;
        v.bytes = bytes;
        v.parameters = params;
        v.bitsPerWeight = bpw;
        if (auto e = o.find("eval"); e != o.end()) {
            QZ_TRY(ev, readEval(R, *e, ctx + "eval."));
            v.eval = ev;
        }
        auto ts = o.find("tensors");
        if (ts == o.end() || !ts->is_array()) return R.err(ctx + "tensors", "is missing or not an array");
        for (size_t k2 = 0; k2 < ts->size(); ++k2) {
            const json& t = (*ts)[k2];
            const std::string tctx = ctx + "tensors[" + std::to_string(k2) + "].";
            VariantTensor vt;
            QZ_TRY(tname, R.get<std::string>(t, "name", tctx));
            QZ_TRY(numel, R.get<uint64_t>(t, "numel", tctx));
            QZ_TRY(tb, R.get<uint64_t>(t, "bytes", tctx));
            QZ_TRY(tbpw, R.get<double>(t, "bitsPerWeight", tctx));
            auto te = t.find("error");
            if (te == t.end()) return R.err(tctx + "error", "is missing");
            QZ_TRY(err, readError(R, *te, tctx + "error."));
            vt.name = tname;
            vt.numel = numel;
            vt.bytes = tb;
            vt.bitsPerWeight = tbpw;
            vt.error = err;
            vt.layer = layerIndexOf(vt.name);
            v.tensors.push_back(std::move(vt));
        }
        if (auto of = o.find("outlierFeatures"); of != o.end()) {
            if (!of->is_object()) return R.err(ctx + "outlierFeatures", "is not an object");
            for (auto it = of->begin(); it != of->end(); ++it) {
                if (!it->is_array()) return R.err(ctx + "outlierFeatures." + it.key(), "is not an array");
                std::vector<int32_t> f;
                for (const auto& x : *it) {
                    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
                        return R.err(ctx + "outlierFeatures." + it.key(),
                                     "holds a value that is not a feature index");
                    f.push_back(int32_t(x.get<int64_t>()));
                }
                v.outlierFeatures[it.key()] = std::move(f);
            }
        }
        c.variants.push_back(std::move(v));
    }
    if (auto sel = j.find("selected"); sel != j.end()) {
        if (!sel->is_array()) return R.err("selected", "is not an array");
        for (const auto& x : *sel) {
            if (!x.is_number_integer() || x.get<int64_t>() < 0 ||
                x.get<int64_t>() >= int64_t(c.variants.size()))
                return R.err("selected", "holds an index that is not a variant's");
            c.selected.push_back(int(x.get<int64_t>()));
        }
    }
    return c;
}

Status saveComparison(const Comparison& c, const std::string& path) {
    return writeFileAtomic(path, comparisonToJson(c));
}

Result<Comparison> loadComparison(const std::string& path) {
    auto text = readSmallFile(path, 256u << 20);
    if (!text) return text.error();
    return comparisonFromJson(*text, path);
}

// ---------------------------------------------------------------------------------------------------
// CSV and SVG

namespace {
std::string csvField(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string q = "\"";
    for (char ch : s) {
        if (ch == '"') q += '"';
        q += ch;
    }
    return q + "\"";
}
std::string num(double v, int prec = 6) {
    if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    return buf;
}
std::string xmlEscape(const std::string& s) {
    std::string o;
    for (char ch : s) {
        switch (ch) {
        case '&':
            o += "&amp;";
            break;
        case '<':
            o += "&lt;";
            break;
        case '>':
            o += "&gt;";
            break;
        case '"':
            o += "&quot;";
            break;
        default:
            o += ch;
        }
    }
    return o;
}
ErrorStats totalError(const Variant& v) {
    ErrorStats e;
    for (const auto& t : v.tensors)
        e.merge(t.error);
    return e;
}
} // namespace

std::string comparisonCsv(const Comparison& c, double originalBpw, uint64_t originalBytes) {
    std::ostringstream o;
    o << "name,kind,label,bytes,bits_per_weight,mse,sqnr_db,ppl,ppl_error,mean_kld,same_top_percent\n";
    if (c.originalEval && c.originalEval->done)
        o << "original,original,," << originalBytes << "," << num(originalBpw) << ",0,inf,"
          << num(c.originalEval->ppl) << "," << num(c.originalEval->pplError) << ",0,100\n";
    for (const auto& v : c.variants) {
        const ErrorStats e = totalError(v);
        o << csvField(v.name) << "," << variantKindName(v.kind) << "," << csvField(v.label) << "," << v.bytes
          << "," << num(v.bitsPerWeight) << "," << num(e.mse) << "," << num(e.sqnrDb) << ",";
        if (v.eval.done && v.eval.error.empty())
            o << num(v.eval.ppl) << "," << num(v.eval.pplError) << "," << num(v.eval.meanKld) << ","
              << num(100.0 * v.eval.sameTop);
        else
            o << ",,,";
        o << "\n";
    }
    return o.str();
}

std::string tensorFiguresCsv(const Comparison& c, const std::string& tensorName) {
    std::ostringstream o;
    o << "variant,tensor,numel,bytes,bits_per_weight,mse,max_abs,sqnr_db,cosine\n";
    for (const auto& v : c.variants) {
        const VariantTensor* t = v.find(tensorName);
        if (!t) continue;
        o << csvField(v.name) << "," << csvField(t->name) << "," << t->numel << "," << t->bytes << ","
          << num(t->bitsPerWeight) << "," << num(t->error.mse) << "," << num(t->error.maxAbs) << ","
          << num(t->error.sqnrDb) << "," << num(t->error.cosine, 9) << "\n";
    }
    return o.str();
}

std::string sizeKldSvg(const Comparison& c, int width, int height) {
    std::vector<double> xs, ys;
    std::vector<const Variant*> vs;
    for (const auto& v : c.variants)
        if (v.eval.done && v.eval.error.empty() && v.bitsPerWeight > 0 && std::isfinite(v.eval.meanKld)) {
            xs.push_back(v.bitsPerWeight);
            ys.push_back(v.eval.meanKld);
            vs.push_back(&v);
        }
    const double left = 70, right = 20, top = 40, bottom = 50;
    const double pw = width - left - right, ph = height - top - bottom;
    double x0 = 0, x1 = 16, y0 = 0, y1 = 1;
    if (!xs.empty()) {
        x0 = *std::min_element(xs.begin(), xs.end());
        x1 = *std::max_element(xs.begin(), xs.end());
        y1 = *std::max_element(ys.begin(), ys.end());
        const double dx = std::max(0.5, 0.08 * (x1 - x0));
        x0 = std::max(0.0, x0 - dx);
        x1 += dx;
        y1 = y1 > 0 ? y1 * 1.1 : 1.0;
    }
    auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
    auto Y = [&](double y) { return top + ph - (y - y0) / (y1 - y0) * ph; };
    std::ostringstream o;
    o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2
      << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Size against KL-divergence"
      << (c.modelPath.empty() ? std::string() : " — " + xmlEscape(fs::path(c.modelPath).filename().string()))
      << "</text>\n"
      << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
      << "\" fill=\"none\" stroke=\"black\"/>\n";
    for (int i = 0; i <= 5; ++i) { // ticks
        const double xv = x0 + (x1 - x0) * i / 5, yv = y0 + (y1 - y0) * i / 5;
        o << "<line x1=\"" << num(X(xv)) << "\" y1=\"" << top + ph << "\" x2=\"" << num(X(xv)) << "\" y2=\""
          << top + ph + 5 << "\" stroke=\"black\"/><text x=\"" << num(X(xv)) << "\" y=\"" << top + ph + 18
          << "\" text-anchor=\"middle\">" << num(xv, 3) << "</text>\n";
        o << "<line x1=\"" << left - 5 << "\" y1=\"" << num(Y(yv)) << "\" x2=\"" << left << "\" y2=\""
          << num(Y(yv)) << "\" stroke=\"black\"/><text x=\"" << left - 8 << "\" y=\"" << num(Y(yv) + 4)
          << "\" text-anchor=\"end\">" << num(yv, 3) << "</text>\n";
    }
    o << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 10
      << "\" text-anchor=\"middle\">bits per weight</text>\n"
      << "<text transform=\"translate(16," << top + ph / 2
      << ") rotate(-90)\" text-anchor=\"middle\">mean KL-divergence</text>\n";
    const auto front = paretoFront(xs, ys);
    if (front.size() >= 2) {
        o << "<polyline class=\"pareto\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" "
             "stroke-dasharray=\"5,3\" points=\"";
        for (size_t i : front)
            o << num(X(xs[i])) << "," << num(Y(ys[i])) << " ";
        o << "\"/>\n";
    }
    const std::set<size_t> onFront(front.begin(), front.end());
    for (size_t i = 0; i < xs.size(); ++i) {
        const bool mix = vs[i]->kind == VariantKind::GgufFile && isStandardMix(vs[i]->label);
        o << "<circle class=\"variant\" cx=\"" << num(X(xs[i])) << "\" cy=\"" << num(Y(ys[i]))
          << "\" r=\"5\" fill=\"" << (mix ? "#ff7f0e" : "#1f77b4") << "\" stroke=\""
          << (onFront.count(i) ? "#d62728" : "none") << "\"><title>" << xmlEscape(vs[i]->name)
          << "</title></circle>\n";
        o << "<text x=\"" << num(X(xs[i]) + 7) << "\" y=\"" << num(Y(ys[i]) - 7) << "\">"
          << xmlEscape(mix ? vs[i]->label : vs[i]->name) << "</text>\n";
    }
    o << "</svg>\n";
    return o.str();
}

} // namespace qz

namespace qz {

Status evaluateComparison(const std::shared_ptr<const Model>& original, Comparison& c, std::string_view text,
                          const EvalParams& params, const std::vector<int>& which, const ProgressFn& progress,
                          const VariantEvalFn& onResult) {
    std::vector<int> todo = which;
    if (todo.empty())
        for (int i = 0; i < int(c.variants.size()); ++i)
            todo.push_back(i);
    for (int i : todo)
        if (i < 0 || i >= int(c.variants.size()))
            return makeError("variant index " + std::to_string(i) + " out of range");
    const double parts = double(todo.size() + 1);
    auto share = [&](size_t k, const std::string& name) -> ProgressFn {
        return [&progress, k, parts, prefix = name + ": "](const ProgressInfo& p) {
            return !progress || progress({(double(k) + p.fraction) / parts, prefix + p.step});
        };
    };
    KldBase base;
    auto pr = evaluatePerplexity(*original, text, params, share(0, "original"), nullptr, &base);
    if (!pr) return pr.error();
    VariantEval o;
    o.done = true;
    o.ppl = pr->ppl;
    o.pplError = pr->pplError;
    o.sameTop = 1.0;
    o.tokens = pr->count;
    c.originalEval = o;
    if (onResult) onResult(-1, o);
    for (size_t k = 0; k < todo.size(); ++k) {
        Variant& v = c.variants[size_t(todo[k])];
        const ProgressFn p = share(k + 1, v.name);
        // Half of the variant's share re-makes its weights, half evaluates.
        auto half = [&p](double from) {
            return [&p, from](const ProgressInfo& i) { return p({from + 0.5 * i.fraction, i.step}); };
        };
        VariantEval e;
        auto run = variantRunnable(original, v, half(0.0));
        Result<KldResult> kr = run ? evaluateKlDivergence(*run->model, base, params, half(0.5),
                                                          run->overrides.empty() ? nullptr : &run->overrides,
                                                          run->sources.empty() ? nullptr : &run->sources)
                                   : Result<KldResult>(run.error());
        if (!kr) {
            if (kr.error().cancelled) return kr.error();
            e.error = kr.error().message;
        } else {
            e.done = true;
            e.ppl = kr->pplQ;
            e.pplError = kr->pplQError;
            e.meanKld = kr->meanKld;
            e.sameTop = kr->sameTop;
            e.tokens = kr->count;
        }
        v.eval = e;
        if (onResult) onResult(todo[k], e);
    }
    return okStatus();
}

} // namespace qz

#include "stats/robust_range.h"

namespace qz {

Result<TensorComparison> compareTensor(const Model& original, const std::vector<Variant>& variants,
                                       const std::string& tensorName, int bins, const ProgressFn& progress) {
    if (bins < 1 || bins > 100000) return makeError("histogram bins must be 1 .. 100000");
    TensorComparison out;
    out.tensor = tensorName;
    // Pass 1: the ranges (each variant's values re-made once; only the ranges are kept).
    double lo = 0, hi = 0, errMax = 0;
    bool haveRange = false;
    const double steps = 2.0 * double(std::max<size_t>(1, variants.size()));
    for (size_t i = 0; i < variants.size(); ++i) {
        if (progress && !progress({double(i) / steps, variants[i].name})) return cancelledError();
        auto p = variantTensorPair(original, variants[i], tensorName);
        if (!p) return p.error();
        if (!haveRange) {
            const ValueRange r = robustRange(p->original.data(), p->original.size());
            lo = r.lo;
            hi = r.hi;
            haveRange = true;
        }
        const ValueRange rv = robustRange(p->variant.data(), p->variant.size());
        lo = std::min(lo, double(rv.lo));
        hi = std::max(hi, double(rv.hi));
        std::vector<float> err(p->variant.size());
        for (size_t k = 0; k < err.size(); ++k)
            err[k] = p->variant[k] - p->original[k];
        const ValueRange re = robustRange(err.data(), err.size(), 0.001, true);
        errMax = std::max({errMax, std::fabs(double(re.lo)), std::fabs(double(re.hi))});
    }
    if (!haveRange) return makeError("no variant to compare");
    if (!(hi > lo)) hi = lo + 1e-6;
    if (!(errMax > 0)) errMax = 1e-6;
    // Pass 2: the histograms on the shared bins.
    for (size_t i = 0; i < variants.size(); ++i) {
        if (progress && !progress({(double(variants.size() + i)) / steps, variants[i].name}))
            return cancelledError();
        auto p = variantTensorPair(original, variants[i], tensorName);
        if (!p) return p.error();
        if (i == 0) out.original = histogramF32(p->original.data(), p->original.size(), bins, lo, hi);
        out.values.push_back(histogramF32(p->variant.data(), p->variant.size(), bins, lo, hi));
        std::vector<float> err(p->variant.size());
        for (size_t k = 0; k < err.size(); ++k)
            err[k] = p->variant[k] - p->original[k];
        out.errors.push_back(histogramF32(err.data(), err.size(), bins, -errMax, errMax));
        out.stats.push_back(errorStats(p->original.data(), p->variant.data(), p->variant.size()));
    }
    if (progress && !progress({1.0, "histograms"})) return cancelledError();
    return out;
}

} // namespace qz

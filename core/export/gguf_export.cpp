#include "export/gguf_export.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <regex>

#include "convert/hf_to_gguf.h"
#include "ggml/imatrix.h"
#include "ggml/iquants.h"
#include "ggml/mixes.h"
#include "ggml/quantize.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "io/hf_folder.h"

namespace qz {

namespace {

// One tensor of the output, before its type is chosen.
struct SourceTensor {
    std::string name;
    std::vector<int64_t> ne;   // GGUF order
    DType type = DType::F32;   // its type in the (possibly virtual) input GGUF
    bool forceF32 = false;     // core/convert/README.md A.6 rule for float outputs
    size_t planIndex = 0;      // HF source: index into ConversionPlan::tensors
    size_t modelIndex = 0;     // GGUF source: index into Model::tensors
};

struct Source {
    bool fromHf = false;
    ConversionPlan plan;             // HF source
    std::vector<GgufKV> kvs;
    std::vector<SourceTensor> tensors;
    ggml::MixModelInfo info;
};

bool startsWith(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

uint64_t numel(const std::vector<int64_t>& ne) {
    uint64_t n = 1;
    for (int64_t d : ne) n *= static_cast<uint64_t>(d);
    return n;
}

Result<Source> sourceFromHf(const Model& model) {
    auto plan = planHfToGguf(model);
    if (!plan) return plan.error();
    Source s;
    s.fromHf = true;
    s.plan = std::move(*plan);
    s.kvs = s.plan.kvs;
    for (size_t i = 0; i < s.plan.tensors.size(); ++i) {
        const auto& p = s.plan.tensors[i];
        // llama-quantize starts from convert's F32 file: every tensor is F32 there.
        s.tensors.push_back({p.ggufName, p.ne, DType::F32, p.forceF32, i, 0});
    }
    const ArchParams& a = s.plan.arch;
    s.info.arch = a.ggufArch;
    s.info.nLayer = static_cast<int>(a.nLayer);
    s.info.nHead = static_cast<int>(a.nHead);
    s.info.nHeadKv = static_cast<int>(a.nHeadKv);
    s.info.nExpert = static_cast<int>(a.nExpert);
    return s;
}

// The hyper-parameters a GGUF input carries into the output (its key/values are copied): each present
// one must be an integer, or an array of integers (per-layer values), within a range every real model
// keeps; a crafted block_count 2^32-1 or context_length 0xFFFFFFFF (-1 as int32) is refused instead of
// being written into a new file. Absent keys are fine (the architectures differ); Mamba has 0 heads.
Status checkGgufHyperParameters(const GgufFile& g, const std::string& arch) {
    struct Range {
        const char* key;
        int64_t lo, hi;
    };
    const Range ranges[] = {
        {"block_count", 1, 1 << 16},
        {"context_length", 1, INT32_MAX},
        {"embedding_length", 1, 1 << 20},
        {"feed_forward_length", 0, 1 << 24},
        {"attention.head_count", 0, 1 << 16},
        {"attention.head_count_kv", 0, 1 << 16},
        {"attention.key_length", 1, 1 << 16},
        {"attention.value_length", 1, 1 << 16},
        {"rope.dimension_count", 0, 1 << 16},
        {"expert_count", 0, 1 << 16},
        {"expert_used_count", 0, 1 << 16},
        {"vocab_size", 1, INT32_MAX},
    };
    for (const auto& r : ranges) {
        const std::string key = arch + "." + r.key;
        const GgufValue* v = g.find(key);
        if (!v) continue;
        std::vector<int64_t> values;
        if (v->isArray()) {
            values = v->toIntVector();
            if (values.size() != v->arraySize()) return makeError(g.path + ": GGUF key " + key + " is not integers");
        } else if (auto i = v->toInt()) {
            values.push_back(*i);
        } else {
            return makeError(g.path + ": GGUF key " + key + " is not an integer");
        }
        for (int64_t x : values)
            if (x < r.lo || x > r.hi)
                return makeError(g.path + ": GGUF key " + key + " = " + std::to_string(x) + " out of range (" +
                                 std::to_string(r.lo) + ".." + std::to_string(r.hi) + ")");
    }
    return okStatus();
}

Result<Source> sourceFromGguf(const Model& model) {
    const GgufFile* g = ggufOf(model);
    if (!g) return makeError(model.path + ": not opened as a GGUF file");
    if (auto st = checkGgufHyperParameters(*g, g->getString("general.architecture").value_or("")); !st)
        return st.error();
    Source s;
    for (const auto& kv : g->kvs)
        if (!startsWith(kv.key, "split.")) s.kvs.push_back(kv);
    for (size_t i = 0; i < model.tensors.size(); ++i) {
        const TensorInfo& t = model.tensors[i];
        std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
        const bool forced = t.shape.size() <= 1 || t.name.find("_norm.weight") != std::string::npos ||
                            t.name.size() < 7 || t.name.compare(t.name.size() - 7, 7, ".weight") != 0 ||
                            t.name.find("position_embd") != std::string::npos ||
                            t.name.find("ffn_gate_inp") != std::string::npos;
        s.tensors.push_back({t.name, ne, t.dtype, forced, 0, i});
    }
    const std::string arch = g->getString("general.architecture").value_or("");
    s.info.arch = arch;
    s.info.nLayer = static_cast<int>(g->getUInt(arch + ".block_count").value_or(0));
    s.info.nHead = static_cast<int>(g->getUInt(arch + ".attention.head_count").value_or(0));
    s.info.nHeadKv = static_cast<int>(g->getUInt(arch + ".attention.head_count_kv").value_or(s.info.nHead));
    s.info.nExpert = static_cast<int>(g->getUInt(arch + ".expert_count").value_or(0));
    return s;
}

Status produce(const Model& model, const Source& src, const SourceTensor& t, std::vector<float>& out) {
    if (src.fromHf) return produceTensor(model, src.plan, src.plan.tensors[t.planIndex], out);
    const TensorInfo& info = model.tensors[t.modelIndex];
    out.resize(info.numel());
    return readTensorF32(model, info, out);
}

uint64_t ggufValueBytes(const GgufValue& v) {
    switch (v.type) {
    case GgufType::String: return 8 + v.str.size();
    case GgufType::Array: {
        uint64_t n = 4 + 8;
        if (v.elemType == GgufType::String)
            for (const auto& s : v.strings) n += 8 + s.size();
        else
            n += v.data.size();
        return n;
    }
    default: return ggufScalarSize(v.type);
    }
}

// Size of header + KVs + tensor infos, padded to 32 (the data section start).
uint64_t headerBytes(const std::vector<GgufKV>& kvs, const std::vector<GgufTensorLog>& tensors) {
    uint64_t n = 4 + 4 + 8 + 8;
    for (const auto& kv : kvs) n += 8 + kv.key.size() + 4 + ggufValueBytes(kv.value);
    for (const auto& t : tensors) n += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
    return (n + 31) / 32 * 32;
}

struct FloatOut {
    const char* name;
    DType type;
    int32_t fileType;
};
constexpr FloatOut kFloatOuts[] = {{"F32", DType::F32, 0}, {"F16", DType::F16, 1}, {"BF16", DType::BF16, 32}};

// gguf-split's plan (core/gguf/README.md A.8): the index of each part's first tensor. By tensors: a new
// part every `maxTensors` tensors. By size: a new part when the part's tensor data, each tensor padded
// to 32 bytes, would exceed `maxBytes`; a tensor larger than that on its own gets a part of its own
// (gguf-split refuses the file instead when it is the first tensor).
std::vector<size_t> planSplits(const std::vector<GgufTensorLog>& tensors, uint64_t maxBytes, int maxTensors) {
    std::vector<size_t> firsts{0};
    uint64_t current = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const uint64_t n = (tensors[i].bytesAfter + 31) / 32 * 32;
        bool newPart = false;
        if (maxTensors > 0)
            newPart = i > 0 && i % static_cast<size_t>(maxTensors) == 0;
        else if (maxBytes > 0)
            newPart = i > firsts.back() && current + n > maxBytes;
        if (newPart) {
            firsts.push_back(i);
            current = n;
        } else {
            current += n;
        }
    }
    return firsts;
}

// The key/values of part k of n: every key/value of the model in the first part only, then split.no,
// split.count (UINT16) and split.tensors.count (INT32), as gguf-split writes them.
std::vector<GgufKV> splitPartKvs(const std::vector<GgufKV>& kvs, size_t k, size_t n, size_t totalTensors) {
    std::vector<GgufKV> out;
    if (k == 0) out = kvs;
    out.push_back({"split.no", GgufValue::u16(static_cast<uint16_t>(k))});
    out.push_back({"split.count", GgufValue::u16(static_cast<uint16_t>(n))});
    out.push_back({"split.tensors.count", GgufValue::i32(static_cast<int32_t>(totalTensors))});
    return out;
}

// --override-kv: each key removed and re-appended with its new value (gguf_set_val_*).
void applyKvOverrides(std::vector<GgufKV>& kvs, const std::vector<GgufKvOverride>& overrides) {
    for (const auto& o : overrides) {
        kvs.erase(std::remove_if(kvs.begin(), kvs.end(), [&](const GgufKV& kv) { return kv.key == o.key; }), kvs.end());
        kvs.push_back({o.key, o.value});
    }
}

}  // namespace

std::vector<std::string> ggufExportTypes() {
    std::vector<std::string> out;
    for (const auto& f : kFloatOuts) out.emplace_back(f.name);
    for (const char* t : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M",
                          "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ1_S", "IQ1_M", "IQ2_XXS",
                          "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS",
                          "TQ1_0", "TQ2_0", "MXFP4_MOE"})
        out.emplace_back(t);
    return out;
}

Result<GgufKvOverride> parseGgufKvOverride(const std::string& spec) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
        return makeError("--override-kv needs KEY=TYPE:VALUE (TYPE int, float, bool or str), got '" + spec + "'");
    GgufKvOverride o;
    o.key = spec.substr(0, eq);
    if (o.key.size() > 127) return makeError("--override-kv key longer than 127 bytes: '" + o.key + "'");
    if (o.key == "general.alignment" || o.key.rfind("split.", 0) == 0)
        return makeError("--override-kv cannot set " + o.key + " (the writer decides the file layout)");
    const std::string rest = spec.substr(eq + 1);
    const auto colon = rest.find(':');
    const std::string type = colon == std::string::npos ? rest : rest.substr(0, colon);
    const std::string value = colon == std::string::npos ? std::string() : rest.substr(colon + 1);
    if (colon == std::string::npos || (type != "int" && type != "float" && type != "bool" && type != "str"))
        return makeError("--override-kv " + o.key + ": type must be int, float, bool or str, as in KEY=int:8");
    const std::string what = "--override-kv " + o.key + ": ";
    if (type == "int") {
        errno = 0;
        char* end = nullptr;
        const long long v = value.empty() ? 0 : std::strtoll(value.c_str(), &end, 10);
        if (value.empty() || *end != 0 || errno == ERANGE)
            return makeError(what + "'" + value + "' is not a whole number");
        if (v < 0 || v > 4294967295LL)
            return makeError(what + value + " is outside 0..4294967295 (written as UINT32, as llama-quantize does)");
        o.value = GgufValue::u32(static_cast<uint32_t>(v));
    } else if (type == "float") {
        errno = 0;
        char* end = nullptr;
        const double v = value.empty() ? 0 : std::strtod(value.c_str(), &end);
        if (value.empty() || *end != 0 || !std::isfinite(v) || std::fabs(v) > 3.4028234663852886e38)
            return makeError(what + "'" + value + "' is not a finite FLOAT32 number");
        o.value = GgufValue::f32(static_cast<float>(v));
    } else if (type == "bool") {
        if (value != "true" && value != "false") return makeError(what + "bool must be true or false, got '" + value + "'");
        o.value = GgufValue::boolean(value == "true");
    } else {
        if (value.size() > 127) return makeError(what + "string longer than 127 bytes");
        o.value = GgufValue::string(value);
    }
    return o;
}

Result<uint64_t> parseGgufSplitSize(const std::string& text) {
    const std::string bad = "--split-max-size needs a positive whole number followed by M or G (10^6 / 10^9 bytes), got '" + text + "'";
    if (text.size() < 2) return makeError(bad);
    const char unit = text.back();
    const std::string digits = text.substr(0, text.size() - 1);
    if ((unit != 'M' && unit != 'G') || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
        return makeError(bad);
    const uint64_t n = std::stoull(digits);
    if (n == 0) return makeError(bad);
    return n * (unit == 'M' ? 1000000ULL : 1000000000ULL);
}

Result<GgufExportResult> exportGguf(const Model& model, const GgufExportParams& params, const ProgressFn& progress,
                                    const std::function<void(const GgufTensorLog&)>& onTensor) {
    const auto start = std::chrono::steady_clock::now();
    GgufExportResult result;
    auto srcR = model.format == ModelFormat::Gguf ? sourceFromGguf(model) : sourceFromHf(model);
    if (!srcR) return srcR.error();
    Source& src = *srcR;
    if (src.fromHf)
        for (const auto& n : src.plan.notes) result.notes.push_back(n);

    // The output type: a float type (convert's --outtype) or a llama-quantize file type.
    const FloatOut* floatOut = nullptr;
    for (const auto& f : kFloatOuts)
        if (params.type == f.name) floatOut = &f;
    std::optional<ggml::FileType> ftype;
    if (!floatOut) {
        ftype = ggml::fileTypeFromName(params.type);
        const auto known = ggufExportTypes();
        if (!ftype || std::find(known.begin(), known.end(), ggml::fileTypeInfo(*ftype)->name) == known.end()) {
            std::string list;
            for (const auto& k : known) list += (list.empty() ? "" : " ") + k;
            return makeError("unknown GGUF type '" + params.type + "' (known: " + list + ")");
        }
    }
    result.type = floatOut ? floatOut->name : std::string(ggml::fileTypeInfo(*ftype)->name);
    if (!params.dryRun && params.outputPath.empty()) return makeError("no output path given");
    if (!params.dryRun)
        if (auto st = refuseOverwritingModel(model, params.outputPath); !st) return st.error();

    ggml::Imatrix imatrix;
    const bool haveImatrix = !params.imatrixPath.empty();
    if (haveImatrix) {
        if (floatOut) return makeError("an importance matrix only applies to quantized types");
        auto im = ggml::loadImatrix(params.imatrixPath);
        if (!im) return im.error();
        imatrix = std::move(*im);
    }

    // Order and types.
    std::vector<size_t> order(src.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::vector<DType> types(src.tensors.size());
    std::vector<std::string> reasons(src.tensors.size());
    std::vector<char> reasonsNeedImatrix(src.tensors.size(), 0);  // llama-quantize's tensor_requires_imatrix
    std::vector<char> quantizable(src.tensors.size(), 0);
    if (floatOut) {
        // convert_hf_to_gguf: its own order; forced tensors F32, the rest the outtype (F16 if a row
        // does not fit a block, which cannot happen for these element types).
        for (size_t i = 0; i < src.tensors.size(); ++i) {
            types[i] = src.tensors[i].forceF32 ? DType::F32 : floatOut->type;
            reasons[i] = src.tensors[i].forceF32 ? "kept F32 (norm, bias, 1-D or position embedding)" : "output type";
        }
    } else {
        std::vector<std::string> names;
        for (const auto& t : src.tensors) names.push_back(t.name);
        order = ggml::llamaOrder(names);
        std::vector<ggml::MixTensor> mt;
        for (size_t k : order) mt.push_back({src.tensors[k].name, src.tensors[k].ne, src.tensors[k].type});
        ggml::MixOptions opt;
        opt.ftype = *ftype;
        opt.hasImatrix = haveImatrix;
        opt.pure = params.pure;
        opt.outputTensorType = params.outputTensorType;
        opt.tokenEmbeddingType = params.tokenEmbeddingType;
        for (const auto& o : params.overrides) opt.tensorTypes.emplace_back(o.regex, o.type);
        auto choices = ggml::chooseTensorTypes(src.info, mt, opt);
        if (!choices) return choices.error();
        // llama-quantize refuses these targets without an importance matrix (tensor_requires_imatrix,
        // llama-quant.cpp; core/ggml/README-iquants.md), and so do we: name the tensors.
        if (!haveImatrix) {
            std::vector<std::string> need;
            for (size_t k = 0; k < order.size(); ++k)
                if ((*choices)[k].requiresImatrix)
                    need.push_back(mt[k].name + " (" + std::string(dtypeName((*choices)[k].type)) + ")");
            if (!need.empty()) {
                std::string list;
                for (size_t i = 0; i < need.size() && i < 8; ++i) list += (i ? ", " : "") + need[i];
                if (need.size() > 8) list += ", ... (" + std::to_string(need.size()) + " tensors)";
                return makeError(std::string(ggml::fileTypeInfo(*ftype)->name) +
                                 " needs an importance matrix (--imatrix) for " + list);
            }
        }
        for (size_t k = 0; k < order.size(); ++k) {
            types[order[k]] = (*choices)[k].type;
            reasons[order[k]] = (*choices)[k].reason;
            reasonsNeedImatrix[order[k]] = (*choices)[k].requiresImatrix;
            quantizable[order[k]] = (*choices)[k].allowed;
            if ((*choices)[k].beyondLlamaCpp)
                result.notes.push_back(src.tensors[order[k]].name + ": " + (*choices)[k].reason);
        }
    }

    // Key/values.
    std::vector<GgufKV> kvs = src.kvs;
    auto setKv = [&](const std::string& key, GgufValue v, bool moveToEnd) {
        auto it = std::find_if(kvs.begin(), kvs.end(), [&](const GgufKV& kv) { return kv.key == key; });
        if (it != kvs.end() && !moveToEnd) {
            it->value = std::move(v);
            return;
        }
        if (it != kvs.end()) kvs.erase(it);
        kvs.push_back({key, std::move(v)});
    };
    if (floatOut) {
        setKv("general.file_type", GgufValue::u32(static_cast<uint32_t>(floatOut->fileType)), false);
        applyKvOverrides(kvs, params.kvOverrides);
    } else {
        // llama-quantize: gguf_set_val_u32 removes and appends, so these two end up last.
        setKv("general.quantization_version", GgufValue::u32(2), true);
        setKv("general.file_type", GgufValue::u32(static_cast<uint32_t>(*ftype)), true);
        // Then its kv_overrides list: the user's --override-kv first, then the imatrix keys it appends
        // (core/gguf/README.md A.9).
        applyKvOverrides(kvs, params.kvOverrides);
        if (haveImatrix) {
            setKv("quantize.imatrix.file", GgufValue::string(std::filesystem::path(params.imatrixPath).filename().string()), true);
            if (!imatrix.datasets.empty()) setKv("quantize.imatrix.dataset", GgufValue::string(imatrix.datasets.front()), true);
            setKv("quantize.imatrix.entries_count", GgufValue::u32(static_cast<uint32_t>(imatrix.values.size())), true);
            setKv("quantize.imatrix.chunks_count", GgufValue::u32(static_cast<uint32_t>(imatrix.chunkCount)), true);
        }
    }

    // Plan log (sizes known before anything is produced).
    for (size_t k : order) {
        const SourceTensor& t = src.tensors[k];
        GgufTensorLog log;
        log.name = t.name;
        const bool generated = src.fromHf && !src.plan.tensors[t.planIndex].generated.empty();
        log.sourceName = generated ? std::string("(generated by the converter)")
                         : src.fromHf ? model.tensors[src.plan.tensors[t.planIndex].source].name
                                      : model.tensors[t.modelIndex].name;
        log.ne = t.ne;
        log.from = t.type;
        log.to = types[k];
        const uint64_t n = numel(t.ne);
        log.bytesBefore = generated ? 0
                          : src.fromHf ? model.tensors[src.plan.tensors[t.planIndex].source].nbytes
                                       : model.tensors[t.modelIndex].nbytes;
        auto after = bytesFor(types[k], n);
        if (!after) return makeError(t.name + ": " + std::string(dtypeName(types[k])) + " does not fit its row length");
        log.bytesAfter = *after;
        log.reason = reasons[k];
        log.quantizable = quantizable[k];
        result.parameters += n;
        result.tensors.push_back(log);
    }
    // The parts of a split output (one part otherwise) and their sizes.
    if (params.splitMaxBytes && params.splitMaxTensors)
        return makeError("give a split size or a tensor count per split, not both");
    if (params.splitMaxTensors < 0) return makeError("the tensor count per split must be positive");
    const bool split = params.splitMaxBytes > 0 || params.splitMaxTensors > 0;
    const std::vector<size_t> firsts =
        split ? planSplits(result.tensors, params.splitMaxBytes, params.splitMaxTensors) : std::vector<size_t>{0};
    const size_t nParts = firsts.size();
    if (nParts > 65535) return makeError("the output would have " + std::to_string(nParts) + " parts; gguf-split allows 65535");
    if (split && result.tensors.size() > 2147483647u) return makeError("too many tensors for split.tensors.count");
    auto partEnd = [&](size_t k) { return k + 1 < nParts ? firsts[k + 1] : result.tensors.size(); };
    std::vector<std::vector<GgufKV>> partKvs(nParts);
    result.fileBytes = 0;
    for (size_t k = 0; k < nParts; ++k) {
        partKvs[k] = split ? splitPartKvs(kvs, k, nParts, result.tensors.size()) : kvs;
        const std::vector<GgufTensorLog> part(result.tensors.begin() + static_cast<std::ptrdiff_t>(firsts[k]),
                                              result.tensors.begin() + static_cast<std::ptrdiff_t>(partEnd(k)));
        uint64_t dataBytes = 0;
        for (const auto& t : part) dataBytes += (t.bytesAfter + 31) / 32 * 32;
        result.fileBytes += headerBytes(partKvs[k], part) + dataBytes;
        const std::string prefix = ggufSplitPrefix(params.outputPath);
        result.paths.push_back(split ? ggufSplitPath(prefix, static_cast<uint32_t>(k), static_cast<uint32_t>(nParts))
                                     : params.outputPath);
    }
    if (split) result.splitFirstTensor = firsts;
    uint64_t rawBytes = 0;
    for (const auto& t : result.tensors) rawBytes += t.bytesAfter;
    result.bitsPerWeight = result.parameters ? 8.0 * static_cast<double>(rawBytes) / static_cast<double>(result.parameters) : 0;
    if (params.dryRun) {
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return result;
    }

    // Write, streaming: each part is begun at its first tensor and closed after its last; the parts are
    // renamed to their final names only when all of them are complete.
    for (const auto& p : result.paths)
        if (auto st = refuseOverwritingModel(model, p); !st) return st.error();
    const auto dims = floatOut ? GgufWriter::DimsConvention::Python : GgufWriter::DimsConvention::C;
    std::vector<std::unique_ptr<GgufWriter>> writers(nParts);
    auto beginPart = [&](size_t k) -> Status {
        writers[k] = std::make_unique<GgufWriter>(result.paths[k], dims);
        GgufWriter& w = *writers[k];
        for (auto& kv : partKvs[k])
            if (auto st = w.setKv(kv.key, kv.value); !st) return st;
        for (size_t i = firsts[k]; i < partEnd(k); ++i)
            if (auto st = w.addTensor(result.tensors[i].name, result.tensors[i].ne, result.tensors[i].to); !st) return st;
        return w.begin();
    };
    size_t part = 0;
    if (auto st = beginPart(0); !st) return st.error();
    ProgressTracker tracker(progress, static_cast<double>(result.parameters));
    std::vector<float> values;
    std::vector<uint8_t> bytes;
    for (size_t j = 0; j < order.size(); ++j) {
        const SourceTensor& t = src.tensors[order[j]];
        const GgufTensorLog& log = result.tensors[j];
        if (!tracker.advance(0, t.name)) return cancelledError();
        while (j >= partEnd(part)) {  // the previous part is complete
            if (auto st = writers[part]->close(); !st) return st.error();
            if (auto st = beginPart(++part); !st) return st.error();
        }
        GgufWriter& writer = *writers[part];
        const bool copy = !src.fromHf && t.type == log.to;
        if (copy) {
            const auto raw = model.rawBytes(model.tensors[t.modelIndex]);
            if (auto st = writer.writeTensorData(raw); !st) return st.error();
        } else {
            // An F32 input tensor is quantized straight from the mapped file (no copy); others are produced.
            const float* in = nullptr;
            uint64_t inCount = 0;
            if (!src.fromHf && t.type == DType::F32) {
                const auto raw = model.rawBytes(model.tensors[t.modelIndex]);
                if (reinterpret_cast<uintptr_t>(raw.data()) % alignof(float) == 0 && raw.size() == numel(t.ne) * 4) {
                    in = reinterpret_cast<const float*>(raw.data());
                    inCount = numel(t.ne);
                }
            }
            if (!in) {
                if (auto st = produce(model, src, t, values); !st) return Error{model.path + ": " + st.error().message, false};
                in = values.data();
                inCount = values.size();
            }
            const int64_t ncols = t.ne.empty() ? 1 : t.ne[0];
            const int64_t nrows = ncols ? static_cast<int64_t>(inCount) / ncols : 0;
            const float* imat = nullptr;
            if (haveImatrix && traits(log.to).isQuantized) {
                auto look = imatrix.lookup(t.name, ncols, t.ne.size() > 2 ? t.ne[2] : 1);
                if (!look) return look.error();
                imat = *look;
            }
            // As llama-quantize (llama-quant.cpp "Missing importance matrix for tensor"): an imatrix without
            // an entry for a tensor that needs one stops the export; ggml itself cannot make IQ2_XXS,
            // IQ2_XS or IQ1_S without weights, whatever the tensor.
            if (!imat && (reasonsNeedImatrix[order[j]] || ggml::iquantRequiresImatrix(log.to)))
                return makeError("missing importance matrix entry for tensor " + t.name + " (" +
                                 std::string(dtypeName(log.to)) + ")" +
                                 (haveImatrix ? " in " + params.imatrixPath : std::string()));
            bytes.resize(log.bytesAfter);
            if (auto st = ggml::quantizeTensor(log.to, in, nrows, ncols, imat, bytes.data(), params.threads); !st)
                return Error{t.name + ": " + st.error().message, false};
            if (auto st = writer.writeTensorData(bytes); !st) return st.error();
        }
        // The source pages are not needed again: let the kernel drop them, so that resident memory
        // stays near one tensor even though the whole input is mapped.
        if (!src.fromHf || src.plan.tensors[t.planIndex].generated.empty()) {
            const TensorInfo& in = model.tensors[src.fromHf ? src.plan.tensors[t.planIndex].source : t.modelIndex];
            model.files[in.fileIndex]->adviseDontNeed(in.offset, in.nbytes);
        }
        if (onTensor) onTensor(log);
        if (!tracker.advance(static_cast<double>(numel(t.ne)), t.name)) return cancelledError();
    }
    for (; part < nParts; ++part) {  // the rest (parts without tensors only when the model has none)
        if (!writers[part])
            if (auto st = beginPart(part); !st) return st.error();
        if (auto st = writers[part]->close(); !st) return st.error();
    }
    for (size_t k = 0; k < nParts; ++k) {
        if (auto st = writers[k]->finish(); !st) {
            std::error_code ec;
            for (size_t i = 0; i < k; ++i) std::filesystem::remove(result.paths[i], ec);
            return st.error();
        }
    }
    result.path = result.paths.front();
    result.fileBytes = 0;
    for (const auto& p : result.paths) {
        std::error_code ec;
        const auto n = std::filesystem::file_size(p, ec);
        if (!ec) result.fileBytes += n;
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

Status forEachGgufTensor(const Model& model, const std::vector<std::string>& names,
                         const std::function<Status(const std::string& name, const std::vector<int64_t>& ne,
                                                    const std::vector<float>& values)>& visit) {
    auto srcR = model.format == ModelFormat::Gguf ? sourceFromGguf(model) : sourceFromHf(model);
    if (!srcR) return srcR.error();
    const Source& src = *srcR;
    std::vector<std::string> all;
    for (const auto& t : src.tensors) all.push_back(t.name);
    std::vector<float> values;
    for (size_t k : ggml::llamaOrder(all)) {
        const SourceTensor& t = src.tensors[k];
        if (!names.empty() && std::find(names.begin(), names.end(), t.name) == names.end()) continue;
        if (auto st = produce(model, src, t, values); !st) return Error{model.path + ": " + st.error().message, st.error().cancelled};
        if (auto st = visit(t.name, t.ne, values); !st) return st.error();
        if (!src.fromHf || src.plan.tensors[t.planIndex].generated.empty()) {
            const TensorInfo& in = model.tensors[src.fromHf ? src.plan.tensors[t.planIndex].source : t.modelIndex];
            model.files[in.fileIndex]->adviseDontNeed(in.offset, in.nbytes);
        }
    }
    return okStatus();
}

}  // namespace qz

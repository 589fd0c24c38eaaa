#include "export/gguf_export.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
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
    } else {
        // llama-quantize: gguf_set_val_u32 removes and appends, so these two end up last.
        setKv("general.quantization_version", GgufValue::u32(2), true);
        setKv("general.file_type", GgufValue::u32(static_cast<uint32_t>(*ftype)), true);
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
        result.parameters += n;
        result.tensors.push_back(log);
    }
    uint64_t dataBytes = 0;
    for (const auto& t : result.tensors) dataBytes += (t.bytesAfter + 31) / 32 * 32;
    result.fileBytes = headerBytes(kvs, result.tensors) + dataBytes;
    uint64_t rawBytes = 0;
    for (const auto& t : result.tensors) rawBytes += t.bytesAfter;
    result.bitsPerWeight = result.parameters ? 8.0 * static_cast<double>(rawBytes) / static_cast<double>(result.parameters) : 0;
    if (params.dryRun) {
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return result;
    }

    // Write, streaming.
    GgufWriter writer(params.outputPath, floatOut ? GgufWriter::DimsConvention::Python : GgufWriter::DimsConvention::C);
    for (auto& kv : kvs)
        if (auto st = writer.setKv(kv.key, kv.value); !st) return st.error();
    for (const auto& t : result.tensors)
        if (auto st = writer.addTensor(t.name, t.ne, t.to); !st) return st.error();
    if (auto st = writer.begin(); !st) return st.error();

    ProgressTracker tracker(progress, static_cast<double>(result.parameters));
    std::vector<float> values;
    std::vector<uint8_t> bytes;
    for (size_t j = 0; j < order.size(); ++j) {
        const SourceTensor& t = src.tensors[order[j]];
        const GgufTensorLog& log = result.tensors[j];
        if (!tracker.advance(0, t.name)) return cancelledError();
        const bool copy = !src.fromHf && t.type == log.to;
        if (copy) {
            const auto raw = model.rawBytes(model.tensors[t.modelIndex]);
            if (auto st = writer.writeTensorData(raw); !st) return st.error();
        } else {
            if (auto st = produce(model, src, t, values); !st) return Error{model.path + ": " + st.error().message, false};
            const int64_t ncols = t.ne.empty() ? 1 : t.ne[0];
            const int64_t nrows = ncols ? static_cast<int64_t>(values.size()) / ncols : 0;
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
            if (auto st = ggml::quantizeTensor(log.to, values.data(), nrows, ncols, imat, bytes.data(), params.threads); !st)
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
    if (auto st = writer.finish(); !st) return st.error();
    result.path = params.outputPath;
    std::error_code ec;
    result.fileBytes = std::filesystem::file_size(params.outputPath, ec);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

}  // namespace qz

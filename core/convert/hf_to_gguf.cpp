#include "convert/hf_to_gguf.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "tokenizer/hf_vocab.h"

namespace qz {

namespace {
using json = nlohmann::json;

std::optional<int64_t> intKey(const json& j, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        auto it = j.find(k);
        if (it != j.end() && it->is_number_integer()) return it->get<int64_t>();
    }
    return std::nullopt;
}

std::optional<double> numKey(const json& j, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        auto it = j.find(k);
        if (it != j.end() && it->is_number()) return it->get<double>();
    }
    return std::nullopt;
}
}  // namespace

namespace {
// Every value written into the GGUF or used for a size is range-checked: a config.json is hostile input
// (num_hidden_layers 2^40, head_dim -64 or max_position_embeddings -1 must not reach the file, and a
// head_dim of 2^40 must not size the llama3 rope_freqs tensor).
Status checkArchRanges(const ArchParams& a, const std::string& where) {
    auto range = [&](const char* key, int64_t v, int64_t lo, int64_t hi) -> Status {
        if (v < lo || v > hi)
            return makeError(where + ": config.json '" + key + "' = " + std::to_string(v) +
                             " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return okStatus();
    };
    constexpr int64_t kMaxU31 = (int64_t{1} << 31) - 1;
    const bool gpt2 = a.ggufArch == "gpt2";
    for (auto st : {range(gpt2 ? "n_layer" : "num_hidden_layers", a.nLayer, 1, 4096),
                    range(gpt2 ? "n_embd" : "hidden_size", a.nEmbd, 1, 1 << 20),
                    range(gpt2 ? "n_head" : "num_attention_heads", a.nHead, 1, 4096),
                    range("num_key_value_heads", a.nHeadKv, 1, a.nHead),
                    range("head_dim", a.headDim, 1, 4096),
                    range(gpt2 ? "n_inner" : "intermediate_size", a.nFf, 1, 1 << 22),
                    range(gpt2 ? "n_positions" : "max_position_embeddings", a.nCtx, 1, kMaxU31),
                    range("vocab_size", a.nVocab, 1, kMaxU31)})
        if (!st) return st;
    if (gpt2 && a.nEmbd != a.nHead * a.headDim)
        return makeError(where + ": config.json n_embd is not n_head x head dimension");
    if (!gpt2 && !a.headDimExplicit && a.nEmbd % a.nHead != 0)
        return makeError(where + ": config.json hidden_size is not a multiple of num_attention_heads");
    if (!gpt2 && a.headDim % 2 != 0)
        return makeError(where + ": config.json head dimension must be even for RoPE");
    // q_proj has heads x head_dim rows: the product must fit the tensors we size from it.
    if (a.nHead * a.headDim > (int64_t{1} << 22))
        return makeError(where + ": config.json attention width (heads x head_dim) is too large");
    if (!std::isfinite(a.normEps) || !(a.normEps > 0) || !(a.normEps < 1))
        return makeError(where + ": config.json norm epsilon must be in (0, 1)");
    if (!std::isfinite(a.ropeTheta) || !(a.ropeTheta > 0))
        return makeError(where + ": config.json rope_theta must be a positive number");
    if (a.llama3Rope && (!std::isfinite(a.llama3Factor) || !std::isfinite(a.llama3LowFreq) ||
                         !std::isfinite(a.llama3HighFreq) || !(a.llama3LowFreq > 0) ||
                         !(a.llama3OrigCtx >= 1 && a.llama3OrigCtx <= static_cast<double>(kMaxU31))))
        return makeError(where + ": invalid llama3 rope_scaling values");
    return okStatus();
}
}  // namespace

Result<ArchParams> archParamsFromConfig(const std::string& configJson, const std::string& where) {
    json j;
    try {
        j = json::parse(configJson);
    } catch (const std::exception& e) {
        return makeError(where + ": config.json is not valid JSON: " + e.what());
    }
    if (!j.is_object()) return makeError(where + ": config.json is not a JSON object");
    ArchParams a;
    a.hfType = j.value("model_type", std::string());
    if (a.hfType == "llama" || a.hfType == "mistral")
        a.ggufArch = "llama";
    else if (a.hfType == "qwen2")
        a.ggufArch = "qwen2";
    else if (a.hfType == "gpt2")
        a.ggufArch = "gpt2";
    else
        return makeError(where + ": GGUF export supports the llama, mistral, qwen2 and gpt2 architectures; "
                                 "config.json says model_type '" + a.hfType + "'");
    auto need = [&](std::initializer_list<const char*> keys, int64_t& dst) -> Status {
        auto v = intKey(j, keys);
        if (!v || *v <= 0 || *v > (int64_t{1} << 40))
            return makeError(where + ": config.json lacks a valid '" + std::string(*keys.begin()) + "'");
        dst = *v;
        return okStatus();
    };
    const bool gpt2 = a.ggufArch == "gpt2";
    for (auto st : {need(gpt2 ? std::initializer_list<const char*>{"n_layer"} : std::initializer_list<const char*>{"num_hidden_layers"}, a.nLayer),
                    need(gpt2 ? std::initializer_list<const char*>{"n_embd"} : std::initializer_list<const char*>{"hidden_size"}, a.nEmbd),
                    need(gpt2 ? std::initializer_list<const char*>{"n_head"} : std::initializer_list<const char*>{"num_attention_heads"}, a.nHead),
                    need({"vocab_size"}, a.nVocab)}) {
        if (!st) return st.error();
    }
    if (gpt2) {
        a.nFf = intKey(j, {"n_inner"}).value_or(4 * a.nEmbd);
        a.nCtx = intKey(j, {"n_ctx", "n_positions"}).value_or(1024);
        a.nHeadKv = a.nHead;
        a.normEps = numKey(j, {"layer_norm_epsilon"}).value_or(1e-5);
        a.tiedEmbeddings = true;
    } else {
        if (auto st = need({"intermediate_size"}, a.nFf); !st) return st.error();
        a.nCtx = intKey(j, {"max_position_embeddings"}).value_or(2048);
        a.nHeadKv = intKey(j, {"num_key_value_heads"}).value_or(a.nHead);
        a.normEps = numKey(j, {"rms_norm_eps"}).value_or(1e-6);
        a.ropeTheta = numKey(j, {"rope_theta"}).value_or(10000.0);
        a.tiedEmbeddings = j.value("tie_word_embeddings", false);
        if (auto rs = j.find("rope_scaling"); rs != j.end() && rs->is_object()) {
            const std::string type = rs->value("rope_type", rs->value("type", std::string()));
            if (type == "llama3") {
                a.llama3Rope = true;
                a.llama3Factor = numKey(*rs, {"factor"}).value_or(8.0);
                a.llama3LowFreq = numKey(*rs, {"low_freq_factor"}).value_or(1.0);
                a.llama3HighFreq = numKey(*rs, {"high_freq_factor"}).value_or(4.0);
                a.llama3OrigCtx = numKey(*rs, {"original_max_position_embeddings"}).value_or(8192.0);
                if (!(a.llama3HighFreq > a.llama3LowFreq) || !(a.llama3Factor > 0) || !(a.llama3OrigCtx > 0))
                    return makeError(where + ": invalid llama3 rope_scaling values");
            } else if (!type.empty() && type != "default") {
                return makeError(where + ": rope_scaling '" + type + "' is not supported by the GGUF export yet");
            }
        }
    }
    if (auto hd = intKey(j, {"head_dim"})) {
        a.headDim = *hd;
        a.headDimExplicit = true;
    } else {
        a.headDim = a.nEmbd / a.nHead;
    }
    if (a.nHeadKv <= 0 || a.nHead % a.nHeadKv != 0)
        return makeError(where + ": num_attention_heads must be a multiple of num_key_value_heads");
    if (auto st = checkArchRanges(a, where); !st) return st.error();
    return a;
}

std::string generalNameFromDir(const std::string& dirName) {
    std::string out;
    bool startWord = true;
    for (char c : dirName) {
        if (c == '-' || c == '_') {
            out += ' ';
            startWord = true;
            continue;
        }
        out += startWord ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
        startWord = false;
    }
    return out;
}

std::string sizeLabel(uint64_t n) {
    // Scaled to K/M/B/T and shown with enough decimals for two significant digits.
    double v = static_cast<double>(n);
    const char* suffix = "K";
    double scaled = v * 1e-3;
    if (v > 1e12) scaled = v * 1e-12, suffix = "T";
    else if (v > 1e9) scaled = v * 1e-9, suffix = "B";
    else if (v > 1e6) scaled = v * 1e-6, suffix = "M";
    const int digits = static_cast<int>(std::to_string(static_cast<long long>(std::llround(scaled))).size());
    const int decimals = std::max(2 - digits, 0);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f%s", decimals, scaled, suffix);
    return buf;
}

std::vector<float> llama3RopeFactors(const ArchParams& a) {
    std::vector<float> out;
    const int64_t dim = a.headDim;
    const float base = static_cast<float>(a.ropeTheta);
    const double lowWave = a.llama3OrigCtx / a.llama3LowFreq, highWave = a.llama3OrigCtx / a.llama3HighFreq;
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < dim; i += 2) {
        const float freq = 1.0f / std::pow(base, static_cast<float>(i) / static_cast<float>(dim));
        const double wave = 2 * pi / freq;
        double f;
        if (wave < highWave)
            f = 1.0;
        else if (wave > lowWave)
            f = a.llama3Factor;
        else {
            const double smooth = (a.llama3OrigCtx / wave - a.llama3LowFreq) / (a.llama3HighFreq - a.llama3LowFreq);
            f = 1.0 / ((1 - smooth) / a.llama3Factor + smooth);
        }
        out.push_back(static_cast<float>(f));
    }
    return out;
}

void permuteQK(const float* in, float* out, int64_t rows, int64_t cols, int64_t nHeads) {
    const int64_t hd = rows / nHeads, half = hd / 2;
    for (int64_t h = 0; h < nHeads; ++h)
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j) {
                const float* src = in + (h * hd + j * half + i) * cols;
                std::copy(src, src + cols, out + (h * hd + 2 * i + j) * cols);
            }
}

namespace {

struct Mapping {
    std::string name;
    TensorTransform transform = TensorTransform::None;
};

// HF name → GGUF name for the llama family. Empty name = drop silently.
std::optional<Mapping> mapLlama(const std::string& hf, bool permute) {
    static const std::regex layer(R"(^model\.layers\.(\d+)\.(.+)$)");
    if (hf == "model.embed_tokens.weight") return Mapping{"token_embd.weight"};
    if (hf == "model.norm.weight") return Mapping{"output_norm.weight"};
    if (hf == "lm_head.weight") return Mapping{"output.weight"};
    std::smatch m;
    if (!std::regex_match(hf, m, layer)) return std::nullopt;
    const std::string blk = "blk." + m[1].str() + ".";
    static const std::map<std::string, std::string> names = {
        {"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
        {"self_attn.v_proj", "attn_v"},   {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
        {"mlp.gate_proj", "ffn_gate"},    {"mlp.up_proj", "ffn_up"},         {"mlp.down_proj", "ffn_down"},
    };
    const std::string rest = m[2].str();
    if (rest == "self_attn.rotary_emb.inv_freq") return Mapping{""};
    const auto dot = rest.rfind('.');
    if (dot == std::string::npos) return std::nullopt;
    const std::string stem = rest.substr(0, dot), suffix = rest.substr(dot);  // ".weight" / ".bias"
    auto it = names.find(stem);
    if (it == names.end()) return std::nullopt;
    Mapping out{blk + it->second + suffix};
    if (permute && it->second == "attn_q") out.transform = TensorTransform::PermuteQ;
    if (permute && it->second == "attn_k") out.transform = TensorTransform::PermuteK;
    return out;
}

std::optional<Mapping> mapGpt2(std::string hf) {
    if (hf.rfind("transformer.", 0) == 0) hf = hf.substr(12);
    static const std::regex layer(R"(^h\.(\d+)\.(.+)$)");
    if (hf == "wte.weight") return Mapping{"token_embd.weight"};
    if (hf == "wpe.weight") return Mapping{"position_embd.weight"};
    if (hf == "ln_f.weight") return Mapping{"output_norm.weight"};
    if (hf == "ln_f.bias") return Mapping{"output_norm.bias"};
    if (hf == "lm_head.weight") return Mapping{""};  // tied to wte
    std::smatch m;
    if (!std::regex_match(hf, m, layer)) return std::nullopt;
    const std::string blk = "blk." + m[1].str() + ".";
    const std::string rest = m[2].str();
    if (rest == "attn.bias" || rest == "attn.masked_bias") return Mapping{""};
    static const std::map<std::string, std::string> names = {
        {"ln_1", "attn_norm"}, {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
        {"ln_2", "ffn_norm"},  {"mlp.c_fc", "ffn_up"},       {"mlp.c_proj", "ffn_down"},
    };
    const auto dot = rest.rfind('.');
    if (dot == std::string::npos) return std::nullopt;
    auto it = names.find(rest.substr(0, dot));
    if (it == names.end()) return std::nullopt;
    const std::string suffix = rest.substr(dot);
    Mapping out{blk + it->second + suffix};
    // Conv1D weights are stored [in, out]; GGUF wants the Linear layout [out, in].
    if (suffix == ".weight" && it->second != "attn_norm" && it->second != "ffn_norm")
        out.transform = TensorTransform::Transpose;
    return out;
}

bool mustStayF32(const std::string& name, size_t nDims) {
    auto endsWith = [&](const char* s) {
        const std::string suf(s);
        return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    };
    return nDims <= 1 || endsWith("_norm.weight") || !endsWith(".weight") ||
           name.find("position_embd") != std::string::npos || name.find("ffn_gate_inp") != std::string::npos ||
           name.find("token_types") != std::string::npos;
}

std::vector<int64_t> reversed(std::vector<int64_t> v) {
    std::reverse(v.begin(), v.end());
    return v;
}

void addTokenizerKvs(std::vector<GgufKV>& kvs, const Vocab& vocab) {
    for (const auto& kv : tokenizerKvsForGguf(vocab)) {
        using T = TokenizerKv::Type;
        GgufValue v;
        switch (kv.type) {
        case T::U32: v = GgufValue::u32(static_cast<uint32_t>(kv.u)); break;
        case T::I32: v = GgufValue::i32(static_cast<int32_t>(kv.u)); break;
        case T::Bool: v = GgufValue::boolean(kv.b); break;
        case T::String: v = GgufValue::string(kv.str); break;
        case T::StringArray: v = GgufValue::stringArray(kv.strings); break;
        case T::F32Array: v = GgufValue::f32Array(kv.f32s); break;
        case T::I32Array: v = GgufValue::i32Array(kv.i32s); break;
        case T::Other: continue;
        }
        kvs.push_back({kv.key, std::move(v)});
    }
}

}  // namespace

Result<ConversionPlan> planHfToGguf(const Model& model) {
    if (model.format == ModelFormat::Gguf) return makeError(model.path + ": already a GGUF file");
    if (model.configJson.empty()) return makeError(model.path + ": no config.json beside the weights");
    auto arch = archParamsFromConfig(model.configJson, model.path);
    if (!arch) return arch.error();
    ConversionPlan plan;
    plan.arch = *arch;
    const ArchParams& a = plan.arch;
    const bool gpt2 = a.ggufArch == "gpt2";
    const bool permute = a.ggufArch == "llama";

    // Tensors, in HF name order as convert iterates them.
    std::vector<size_t> order(model.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t x, size_t y) { return model.tensors[x].name < model.tensors[y].name; });
    for (size_t idx : order) {
        const TensorInfo& t = model.tensors[idx];
        auto m = gpt2 ? mapGpt2(t.name) : mapLlama(t.name, permute);
        if (!m) return makeError(model.path + ": tensor '" + t.name + "' has no GGUF name for architecture " + a.ggufArch);
        if (m->name.empty()) {
            plan.notes.push_back("dropped " + t.name);
            continue;
        }
        if (!traits(t.dtype).isFloat) return makeError(model.path + ": tensor '" + t.name + "' is not a float tensor");
        PlannedTensor p;
        p.ggufName = m->name;
        p.source = idx;
        p.transform = m->transform;
        std::vector<int64_t> shape = t.shape;
        if (p.transform == TensorTransform::Transpose) {
            if (shape.size() != 2) return makeError(model.path + ": Conv1D tensor '" + t.name + "' is not 2-D");
            std::swap(shape[0], shape[1]);
        }
        if ((p.transform == TensorTransform::PermuteQ || p.transform == TensorTransform::PermuteK)) {
            const int64_t heads = p.transform == TensorTransform::PermuteQ ? a.nHead : a.nHeadKv;
            if (shape.empty() || shape[0] % (2 * heads) != 0)
                return makeError(model.path + ": '" + t.name + "' rows are not a multiple of 2 × heads");
        }
        p.ne = reversed(shape);
        p.forceF32 = mustStayF32(p.ggufName, shape.size());
        plan.tensors.push_back(p);
    }
    if (a.llama3Rope) {  // convert yields it first, before the model's own tensors
        PlannedTensor rf;
        rf.ggufName = "rope_freqs.weight";
        rf.generated = llama3RopeFactors(a);
        rf.ne = {static_cast<int64_t>(rf.generated.size())};
        rf.forceF32 = true;
        plan.tensors.insert(plan.tensors.begin(), std::move(rf));
    }
    if (std::none_of(plan.tensors.begin(), plan.tensors.end(),
                     [](const PlannedTensor& p) { return p.ggufName == "token_embd.weight"; }))
        return makeError(model.path + ": no token embedding tensor");
    // GPT-2 ties lm_head to wte. README.md A.4 says convert emits a copy as output.weight; the
    // November-2026 converter that made the goldens does not (llama.cpp falls back to token_embd),
    // so neither do we.

    // Key/values, in convert_hf_to_gguf's order.
    namespace fs = std::filesystem;
    fs::path dir(model.path);
    if (!fs::is_directory(dir)) dir = dir.parent_path();
    const std::string archKey = a.ggufArch + ".";
    uint64_t params = 0;
    for (const auto& p : plan.tensors) {
        uint64_t n = 1;
        for (int64_t d : p.ne) n *= static_cast<uint64_t>(d);
        params += n;
    }
    auto& kvs = plan.kvs;
    kvs.push_back({"general.architecture", GgufValue::string(a.ggufArch)});
    kvs.push_back({"general.type", GgufValue::string("model")});
    kvs.push_back({"general.name", GgufValue::string(generalNameFromDir(fs::absolute(dir).filename().string()))});
    kvs.push_back({"general.size_label", GgufValue::string(sizeLabel(params))});
    auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
    kvs.push_back({archKey + "block_count", u32(a.nLayer)});
    kvs.push_back({archKey + "context_length", u32(a.nCtx)});
    kvs.push_back({archKey + "embedding_length", u32(a.nEmbd)});
    kvs.push_back({archKey + "feed_forward_length", u32(a.nFf)});
    kvs.push_back({archKey + "attention.head_count", u32(a.nHead)});
    if (gpt2) {
        kvs.push_back({archKey + "attention.layer_norm_epsilon", GgufValue::f32(static_cast<float>(a.normEps))});
    } else {
        kvs.push_back({archKey + "attention.head_count_kv", u32(a.nHeadKv)});
        kvs.push_back({archKey + "rope.freq_base", GgufValue::f32(static_cast<float>(a.ropeTheta))});
        kvs.push_back({archKey + "attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(a.normEps))});
        if (a.headDimExplicit) {
            kvs.push_back({archKey + "attention.key_length", u32(a.headDim)});
            kvs.push_back({archKey + "attention.value_length", u32(a.headDim)});
        }
    }
    kvs.push_back({"general.file_type", GgufValue::u32(0)});  // set by the exporter
    if (a.ggufArch == "llama") {
        kvs.push_back({archKey + "vocab_size", u32(a.nVocab)});
        kvs.push_back({archKey + "rope.dimension_count", u32(a.headDim)});
    }
    kvs.push_back({"general.quantization_version", GgufValue::u32(2)});

    auto vocab = loadHfVocab(dir.string(), model.configJson);
    if (!vocab) return vocab.error();
    for (const auto& w : vocab->warnings) plan.notes.push_back("tokenizer: " + w);
    addTokenizerKvs(kvs, *vocab);
    return plan;
}

Status produceTensor(const Model& model, const ConversionPlan& plan, const PlannedTensor& p,
                     std::vector<float>& out) {
    if (!p.generated.empty()) {
        out = p.generated;
        return okStatus();
    }
    const TensorInfo& t = model.tensors.at(p.source);
    out.resize(t.numel());
    if (p.transform == TensorTransform::None) return readTensorF32(model, t, out);
    std::vector<float> src(t.numel());
    if (auto st = readTensorF32(model, t, src); !st) return st;
    const int64_t rows = t.shape.empty() ? 1 : t.shape[0];
    const int64_t cols = rows ? static_cast<int64_t>(t.numel()) / rows : 0;
    switch (p.transform) {
    case TensorTransform::PermuteQ: permuteQK(src.data(), out.data(), rows, cols, plan.arch.nHead); break;
    case TensorTransform::PermuteK: permuteQK(src.data(), out.data(), rows, cols, plan.arch.nHeadKv); break;
    case TensorTransform::Transpose:
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = src[r * cols + c];
        break;
    case TensorTransform::None: break;
    }
    return okStatus();
}

}  // namespace qz

#include "convert/hf_to_gguf.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "common/fp16.h"
#include "common/json_field.h"
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

std::string supportedModelTypes() {
    return "llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, gemma2, gemma3 (text), phi3 and gpt2";
}

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
    if (a.nExpert > 0) {
        for (auto st : {range("num_experts", a.nExpert, 2, 1024), range("num_experts_per_tok", a.nExpertUsed, 1, a.nExpert)})
            if (!st) return st;
        if (a.expertFf != 0)
            if (auto st = range("moe_intermediate_size", a.expertFf, 1, 1 << 22); !st) return st;
    }
    if (auto st = range("sliding_window", a.slidingWindow, 0, kMaxU31); !st) return st;
    if (auto st = range("sliding_window_pattern", a.slidingPattern, 0, 4096); !st) return st;
    for (double cap : {a.attnSoftcap, a.finalSoftcap, a.queryPreAttnScalar, a.ropeThetaLocal, a.ropeLinearFactor})
        if (!std::isfinite(cap) || cap < 0)
            return makeError(where + ": config.json soft-capping, query_pre_attn_scalar, rope_local_base_freq and "
                                     "rope_scaling factor must be finite and non-negative");
    if (a.ggufArch == "phi3" && (a.ropeDims < 2 || a.ropeDims > a.headDim || a.ropeDims % 2 != 0))
        return makeError(where + ": config.json partial_rotary_factor gives " + std::to_string(a.ropeDims) +
                         " rotary dimensions per head (must be even, 2 .. head_dim)");
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
    auto typeField = jsonStringField(j, "model_type", std::string(), where + ": config.json");
    if (!typeField) return typeField.error();
    a.hfType = std::move(typeField.value());
    // A multimodal Gemma 3 nests the language model's keys in text_config (convert lifts them up).
    if (auto tc = j.find("text_config"); tc != j.end() && tc->is_object() && a.hfType == "gemma3") {
        json lifted = j;
        for (const auto& [k, v] : tc->items()) lifted[k] = v;
        j = std::move(lifted);
    }
    static const std::map<std::string, std::string> kArchOf = {
        {"llama", "llama"},   {"mistral", "llama"},       {"mixtral", "llama"}, {"qwen2", "qwen2"},
        {"qwen3", "qwen3"},   {"qwen3_moe", "qwen3moe"},  {"gemma2", "gemma2"}, {"gemma3", "gemma3"},
        {"gemma3_text", "gemma3"}, {"phi3", "phi3"},      {"gpt2", "gpt2"}};
    if (auto it = kArchOf.find(a.hfType); it != kArchOf.end())
        a.ggufArch = it->second;
    else
        return makeError(where + ": GGUF export supports the model types " + supportedModelTypes() +
                         "; config.json says model_type '" + a.hfType + "'");
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
        auto tied = jsonBoolField(j, "tie_word_embeddings", false, where + ": config.json");
        if (!tied) return tied.error();
        a.tiedEmbeddings = *tied;
        if (auto rs = j.find("rope_scaling"); rs != j.end() && rs->is_object()) {
            auto typeOf = [&](const char* key) { return jsonStringField(*rs, key, std::string(), where + ": config.json rope_scaling"); };
            auto rt = typeOf("rope_type");
            if (rt && rt->empty()) rt = typeOf("type");
            if (!rt) return rt.error();
            const std::string type = *rt;
            if (type == "llama3") {
                a.llama3Rope = true;
                a.llama3Factor = numKey(*rs, {"factor"}).value_or(8.0);
                a.llama3LowFreq = numKey(*rs, {"low_freq_factor"}).value_or(1.0);
                a.llama3HighFreq = numKey(*rs, {"high_freq_factor"}).value_or(4.0);
                a.llama3OrigCtx = numKey(*rs, {"original_max_position_embeddings"}).value_or(8192.0);
                if (!(a.llama3HighFreq > a.llama3LowFreq) || !(a.llama3Factor > 0) || !(a.llama3OrigCtx > 0))
                    return makeError(where + ": invalid llama3 rope_scaling values");
            } else if (type == "linear" && a.ggufArch == "gemma3") {
                a.ropeLinearFactor = numKey(*rs, {"factor"}).value_or(0.0);
                if (!(a.ropeLinearFactor > 0)) return makeError(where + ": rope_scaling linear needs a positive factor");
            } else if (!type.empty() && type != "default") {
                return makeError(where + ": rope_scaling '" + type + "' is not supported by the GGUF export of " +
                                 a.hfType + " yet");
            }
        }
        if (a.ggufArch == "qwen3moe") {
            a.nExpert = intKey(j, {"num_experts", "num_local_experts"}).value_or(0);
            a.nExpertUsed = intKey(j, {"num_experts_per_tok"}).value_or(0);
            a.expertFf = intKey(j, {"moe_intermediate_size"}).value_or(0);
            auto ntp = jsonBoolField(j, "norm_topk_prob", false, where + ": config.json");
            if (!ntp) return ntp.error();
            a.normTopkProb = *ntp;
            // llama.cpp's qwen3moe has no dense layers: every layer must be sparse.
            const bool mlpOnly = j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array() &&
                                 !j["mlp_only_layers"].empty();
            if (mlpOnly || intKey(j, {"decoder_sparse_step"}).value_or(1) != 1)
                return makeError(where + ": qwen3_moe with dense layers (mlp_only_layers, decoder_sparse_step) is "
                                         "not supported by llama.cpp");
            if (a.nExpert < 2 || a.expertFf <= 0)
                return makeError(where + ": config.json lacks valid num_experts / moe_intermediate_size");
        } else if (a.hfType == "mixtral") {
            a.nExpert = intKey(j, {"num_local_experts"}).value_or(0);
            a.nExpertUsed = intKey(j, {"num_experts_per_tok"}).value_or(2);
            if (a.nExpert < 2) return makeError(where + ": config.json lacks a valid num_local_experts");
        }
        if (a.gemmaNorms()) {
            const bool g2 = a.ggufArch == "gemma2";
            a.queryPreAttnScalar = numKey(j, {"query_pre_attn_scalar"}).value_or(256.0);
            auto capOf = [&](const char* key, double def) {
                auto it = j.find(key);
                if (it == j.end()) return def;
                return it->is_number() ? it->get<double>() : 0.0;  // null = off
            };
            a.attnSoftcap = capOf("attn_logit_softcapping", g2 ? 50.0 : 0.0);
            a.finalSoftcap = capOf("final_logit_softcapping", g2 ? 30.0 : 0.0);
            a.slidingWindow = intKey(j, {"sliding_window"}).value_or(4096);
            if (!g2) {
                a.slidingPattern = intKey(j, {"sliding_window_pattern"}).value_or(6);
                a.ropeTheta = numKey(j, {"rope_theta"}).value_or(1000000.0);
                a.ropeThetaLocal = numKey(j, {"rope_local_base_freq"}).value_or(10000.0);
                a.nCtx = intKey(j, {"max_position_embeddings"}).value_or(131072);
            }
            a.tiedEmbeddings = true;
        }
        if (a.ggufArch == "phi3") {
            a.nCtxOrig = intKey(j, {"original_max_position_embeddings"}).value_or(a.nCtx);
            a.slidingWindow = intKey(j, {"sliding_window"}).value_or(0);
        }
    }
    if (auto hd = intKey(j, {"head_dim"})) {
        a.headDim = *hd;
        a.headDimExplicit = true;
    } else if (a.gemmaNorms()) {
        a.headDim = 256;  // Gemma2Config / Gemma3TextConfig default
        a.headDimExplicit = true;
    } else {
        a.headDim = a.nEmbd / a.nHead;
    }
    if (a.ggufArch == "phi3") {
        const double prf = numKey(j, {"partial_rotary_factor"}).value_or(1.0);
        if (!std::isfinite(prf) || !(prf > 0) || prf > 1)
            return makeError(where + ": config.json partial_rotary_factor must be in (0, 1]");
        a.ropeDims = static_cast<int64_t>(prf * static_cast<double>(a.nEmbd)) / a.nHead;
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

// HF name → GGUF name for the llama-like decoders (llama, mistral, mixtral, qwen2/3, qwen3moe, gemma2/3,
// phi3), as convert's tensor_mapping.py names them for each architecture. Empty name = drop silently.
// Expert weights are not mapped here (planHfToGguf stacks them).
std::optional<Mapping> mapDecoder(std::string hf, const ArchParams& a, bool permute) {
    static const std::regex layer(R"(^model\.layers\.(\d+)\.(.+)$)");
    const bool gemma = a.gemmaNorms();
    if (a.ggufArch == "gemma3") {
        // Gemma3ForConditionalGeneration: the language model under language_model.*; the vision tower and
        // the projector are not part of the text model (convert skips them).
        if (hf.find("vision_tower") != std::string::npos || hf.find("multi_modal_projector") != std::string::npos)
            return Mapping{""};
        if (hf.rfind("language_model.", 0) == 0) hf = hf.substr(15);
        if (hf.rfind("model.language_model.", 0) == 0) hf = "model." + hf.substr(21);
    }
    auto withNormShift = [&](Mapping m) {
        // Gemma multiplies by (1 + w): convert adds 1 to every weight whose HF name ends in "norm.weight".
        if (gemma && hf.size() >= 11 && hf.compare(hf.size() - 11, 11, "norm.weight") == 0)
            m.transform = TensorTransform::AddOne;
        return m;
    };
    if (hf == "model.embed_tokens.weight") return Mapping{"token_embd.weight"};
    if (hf == "model.norm.weight") return withNormShift(Mapping{"output_norm.weight"});
    if (hf == "lm_head.weight") return Mapping{gemma ? "" : "output.weight"};  // Gemma: tied to token_embd
    std::smatch m;
    if (!std::regex_match(hf, m, layer)) return std::nullopt;
    const std::string blk = "blk." + m[1].str() + ".";
    static const std::map<std::string, std::string> names = {
        {"input_layernorm", "attn_norm"},       {"self_attn.q_proj", "attn_q"},
        {"self_attn.k_proj", "attn_k"},         {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"},    {"post_attention_layernorm", "ffn_norm"},
        {"mlp.gate_proj", "ffn_gate"},          {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},          {"self_attn.q_norm", "attn_q_norm"},
        {"self_attn.k_norm", "attn_k_norm"},    {"self_attn.qkv_proj", "attn_qkv"},
        {"mlp.gate_up_proj", "ffn_up"},         {"mlp.gate", "ffn_gate_inp"},
        {"block_sparse_moe.gate", "ffn_gate_inp"},
    };
    // Gemma's sandwich norms: post_attention_layernorm follows attention, pre_feedforward_layernorm is the
    // FFN's input norm, post_feedforward_layernorm follows the FFN.
    static const std::map<std::string, std::string> gemmaNames = {
        {"post_attention_layernorm", "post_attention_norm"},
        {"pre_feedforward_layernorm", "ffn_norm"},
        {"post_feedforward_layernorm", "post_ffw_norm"},
    };
    const std::string rest = m[2].str();
    if (rest == "self_attn.rotary_emb.inv_freq") return Mapping{""};
    const auto dot = rest.rfind('.');
    if (dot == std::string::npos) return std::nullopt;
    const std::string stem = rest.substr(0, dot), suffix = rest.substr(dot);  // ".weight" / ".bias"
    std::string ggufStem;
    if (auto g = gemmaNames.find(stem); gemma && g != gemmaNames.end()) {
        ggufStem = g->second;
    } else if (auto it = names.find(stem); it != names.end()) {
        ggufStem = it->second;
    } else {
        return std::nullopt;
    }
    // Names another architecture's loader does not know are refused, not written.
    const bool qkNorm = a.ggufArch == "qwen3" || a.ggufArch == "qwen3moe" || a.ggufArch == "gemma3";
    if ((ggufStem == "attn_q_norm" || ggufStem == "attn_k_norm") && !qkNorm) return std::nullopt;
    if (stem == "self_attn.qkv_proj" && a.ggufArch != "phi3") return std::nullopt;
    if (stem == "mlp.gate_up_proj" && a.ggufArch != "phi3") return std::nullopt;
    if (ggufStem == "ffn_gate_inp" && a.nExpert == 0) return std::nullopt;
    Mapping out = withNormShift(Mapping{blk + ggufStem + suffix});
    if (permute && ggufStem == "attn_q") out.transform = TensorTransform::PermuteQ;
    if (permute && ggufStem == "attn_k") out.transform = TensorTransform::PermuteK;
    return out;
}

// One expert's projection: model.layers.L.{mlp|block_sparse_moe}.experts.E.{gate,up,down}_proj|w1|w2|w3.weight.
struct ExpertName {
    int64_t layer = 0, expert = 0;
    int proj = 0;  // 0 gate, 1 up, 2 down
};
std::optional<ExpertName> parseExpertName(const std::string& hf) {
    static const std::regex re(
        R"(^model\.layers\.(\d+)\.(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$)");
    std::smatch m;
    if (!std::regex_match(hf, m, re)) return std::nullopt;
    if (m[1].length() > 6 || m[2].length() > 6) return std::nullopt;
    ExpertName e;
    e.layer = std::stoll(m[1].str());
    e.expert = std::stoll(m[2].str());
    const std::string p = m[3].str();
    e.proj = (p == "gate_proj" || p == "w1") ? 0 : (p == "up_proj" || p == "w3") ? 1 : 2;
    return e;
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
    // Experts: a layer's 3 × nExpert projections are collected and emitted as three stacked tensors right
    // after the last of them in name order (convert buffers them the same way), in the order convert
    // emits them: qwen3moe down, gate, up; mixtral w1, w2, w3 (gate, down, up).
    struct ExpertGroup {
        std::vector<size_t> src[3];
        int64_t seen = 0;
    };
    std::map<int64_t, ExpertGroup> experts;
    static const char* kExpsName[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    const int emitOrder[3][3] = {{2, 0, 1}, {0, 2, 1}};  // by proj index: qwen3moe / mixtral
    auto emitExperts = [&](int64_t layer, ExpertGroup& g) -> Status {
        const int* ord = a.ggufArch == "qwen3moe" ? emitOrder[0] : emitOrder[1];
        for (int k = 0; k < 3; ++k) {
            const int proj = ord[k];
            const TensorInfo& first = model.tensors[g.src[proj][0]];
            if (first.shape.size() != 2)
                return makeError(model.path + ": expert tensor '" + first.name + "' is not 2-D");
            for (size_t e : g.src[proj]) {
                const TensorInfo& t = model.tensors[e];
                if (t.shape != first.shape || !traits(t.dtype).isFloat)
                    return makeError(model.path + ": expert tensor '" + t.name + "' differs in shape or type from '" +
                                     first.name + "'");
            }
            const int64_t want = proj == 2 ? first.shape[0] : first.shape[1];
            if (want != a.nEmbd)
                return makeError(model.path + ": expert tensor '" + first.name + "' has shape " + first.shapeString() +
                                 ", which does not match hidden_size " + std::to_string(a.nEmbd));
            PlannedTensor p;
            p.ggufName = "blk." + std::to_string(layer) + "." + kExpsName[proj] + ".weight";
            p.source = g.src[proj][0];
            p.stacked = g.src[proj];
            p.ne = {first.shape[1], first.shape[0], a.nExpert};
            p.forceF32 = false;
            plan.tensors.push_back(std::move(p));
        }
        return okStatus();
    };
    for (size_t idx : order) {
        const TensorInfo& t = model.tensors[idx];
        if (a.nExpert > 0) {
            if (auto e = parseExpertName(t.name)) {
                if (e->layer >= a.nLayer || e->expert >= a.nExpert)
                    return makeError(model.path + ": expert tensor '" + t.name + "' is beyond num_hidden_layers or the "
                                     "expert count");
                ExpertGroup& g = experts[e->layer];
                if (g.seen == 0)
                    for (auto& v : g.src) v.assign(static_cast<size_t>(a.nExpert), SIZE_MAX);
                if (g.src[e->proj][static_cast<size_t>(e->expert)] != SIZE_MAX)
                    return makeError(model.path + ": expert tensor '" + t.name + "' appears twice");
                g.src[e->proj][static_cast<size_t>(e->expert)] = idx;
                if (++g.seen == 3 * a.nExpert)
                    if (auto st = emitExperts(e->layer, g); !st) return st.error();
                continue;
            }
        }
        auto m = gpt2 ? mapGpt2(t.name) : mapDecoder(t.name, a, permute);
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
    for (const auto& [layer, g] : experts)
        if (g.seen != 3 * a.nExpert)
            return makeError(model.path + ": layer " + std::to_string(layer) + " has " + std::to_string(g.seen) +
                             " of its " + std::to_string(3 * a.nExpert) + " expert tensors");
    if (a.nExpert > 0 && static_cast<int64_t>(experts.size()) != a.nLayer)
        return makeError(model.path + ": " + std::to_string(experts.size()) + " of " + std::to_string(a.nLayer) +
                         " layers have experts (llama.cpp needs every layer sparse)");
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
    auto f32 = [](double v) { return GgufValue::f32(static_cast<float>(v)); };
    auto key = [&](const char* k, GgufValue v) { kvs.push_back({archKey + k, std::move(v)}); };
    const GgufValue fileType = GgufValue::u32(0);  // set by the exporter
    if (a.ggufArch == "llama" || a.ggufArch == "qwen2" || gpt2) {
        key("block_count", u32(a.nLayer));
        key("context_length", u32(a.nCtx));
        key("embedding_length", u32(a.nEmbd));
        key("feed_forward_length", u32(a.nFf));
        key("attention.head_count", u32(a.nHead));
        if (gpt2) {
            key("attention.layer_norm_epsilon", f32(a.normEps));
        } else {
            key("attention.head_count_kv", u32(a.nHeadKv));
            key("rope.freq_base", f32(a.ropeTheta));
            key("attention.layer_norm_rms_epsilon", f32(a.normEps));
            if (a.nExpert > 0) {  // mixtral
                key("expert_count", u32(a.nExpert));
                key("expert_used_count", u32(a.nExpertUsed));
            }
            if (a.headDimExplicit) {
                key("attention.key_length", u32(a.headDim));
                key("attention.value_length", u32(a.headDim));
            }
        }
        kvs.push_back({"general.file_type", fileType});
        if (a.ggufArch == "llama") {
            key("vocab_size", u32(a.nVocab));
            key("rope.dimension_count", u32(a.headDim));
        }
    } else if (a.ggufArch == "qwen3" || a.ggufArch == "qwen3moe" || a.ggufArch == "gemma3") {
        // convert's generic writer (TextModel.set_gguf_parameters); gemma3 then overwrites some values in
        // place and appends its own keys.
        key("block_count", u32(a.nLayer));
        key("context_length", u32(a.nCtx));
        key("embedding_length", u32(a.nEmbd));
        key("feed_forward_length", u32(a.nFf));
        key("attention.head_count", u32(a.nHead));
        key("attention.head_count_kv", u32(a.nHeadKv));
        if (a.ropeLinearFactor > 0) {
            key("rope.scaling.type", GgufValue::string("linear"));
            key("rope.scaling.factor", f32(a.ropeLinearFactor));
        }
        key("rope.freq_base", f32(a.ropeTheta));
        if (a.ggufArch == "gemma3") key("rope.freq_base_swa", f32(a.ropeThetaLocal));
        key("attention.layer_norm_rms_epsilon", f32(a.normEps));
        if (a.nExpert > 0) {
            key("expert_count", u32(a.nExpert));
            key("expert_used_count", u32(a.nExpertUsed));
        }
        key("attention.key_length", u32(a.headDim));
        key("attention.value_length", u32(a.headDim));
        kvs.push_back({"general.file_type", fileType});
        if (a.ggufArch == "qwen3moe") key("expert_feed_forward_length", u32(a.expertFf));
        if (a.ggufArch == "gemma3") {
            if (a.finalSoftcap > 0) key("final_logit_softcapping", f32(a.finalSoftcap));
            if (a.slidingPattern != 1) key("attention.sliding_window", u32(a.slidingWindow));
        }
    } else if (a.ggufArch == "gemma2") {
        key("context_length", u32(a.nCtx));
        key("embedding_length", u32(a.nEmbd));
        key("block_count", u32(a.nLayer));
        key("feed_forward_length", u32(a.nFf));
        key("attention.head_count", u32(a.nHead));
        key("attention.head_count_kv", u32(a.nHeadKv));
        key("attention.layer_norm_rms_epsilon", f32(a.normEps));
        key("attention.key_length", u32(a.headDim));
        key("attention.value_length", u32(a.headDim));
        kvs.push_back({"general.file_type", fileType});
        key("attn_logit_softcapping", f32(a.attnSoftcap));
        key("final_logit_softcapping", f32(a.finalSoftcap));
        key("attention.sliding_window", u32(a.slidingWindow));
    } else if (a.ggufArch == "phi3") {
        key("context_length", u32(a.nCtx));
        key("rope.scaling.original_context_length", u32(a.nCtxOrig));
        key("embedding_length", u32(a.nEmbd));
        key("feed_forward_length", u32(a.nFf));
        key("block_count", u32(a.nLayer));
        key("attention.head_count", u32(a.nHead));
        key("attention.head_count_kv", u32(a.nHeadKv));
        key("attention.layer_norm_rms_epsilon", f32(a.normEps));
        key("rope.dimension_count", u32(a.ropeDims));
        key("rope.freq_base", f32(a.ropeTheta));
        kvs.push_back({"general.file_type", fileType});
        key("attention.sliding_window", u32(a.slidingWindow));
    }
    kvs.push_back({"general.quantization_version", GgufValue::u32(2)});

    auto vocab = loadHfVocab(dir.string(), model.configJson);
    if (!vocab) return vocab.error();
    for (const auto& w : vocab->warnings) plan.notes.push_back("tokenizer: " + w);
    if (a.gemmaNorms() && vocab->model == "llama") vocab->addSpacePrefix = false;  // convert's Gemma set_vocab
    addTokenizerKvs(kvs, *vocab);
    return plan;
}

Status produceTensor(const Model& model, const ConversionPlan& plan, const PlannedTensor& p,
                     std::vector<float>& out) {
    if (!p.generated.empty()) {
        out = p.generated;
        return okStatus();
    }
    if (!p.stacked.empty()) {  // experts, one after the other along the outermost axis
        uint64_t each = model.tensors.at(p.stacked[0]).numel();
        out.resize(each * p.stacked.size());
        for (size_t e = 0; e < p.stacked.size(); ++e) {
            const TensorInfo& t = model.tensors.at(p.stacked[e]);
            if (t.numel() != each) return makeError(model.path + ": expert tensor '" + t.name + "' changed size");
            if (auto st = readTensorF32(model, t, std::span<float>(out.data() + e * each, each)); !st) return st;
        }
        return okStatus();
    }
    const TensorInfo& t = model.tensors.at(p.source);
    out.resize(t.numel());
    if (p.transform == TensorTransform::None) return readTensorF32(model, t, out);
    if (p.transform == TensorTransform::AddOne) {
        // convert upcasts BF16 to F32 before adding, but adds in F16 for an F16 checkpoint: the sum is then
        // rounded to F16 (exact in F32 first, so one rounding, as torch's F16 addition does).
        if (auto st = readTensorF32(model, t, out); !st) return st;
        for (float& v : out) v = t.dtype == DType::F16 ? fp16ToFp32(fp32ToFp16(v + 1.0f)) : v + 1.0f;
        return okStatus();
    }
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
    case TensorTransform::None:
    case TensorTransform::AddOne: break;
    }
    return okStatus();
}

}  // namespace qz

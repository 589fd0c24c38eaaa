#include "infer/hparams.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/json_field.h"

namespace qz {

namespace {

using json = nlohmann::json;

// Integer field in [lo, hi]; absent or null -> def (if def < lo the field is required).
Status getInt(const json& j, const char* key, int def, int lo, int hi, int& out, const std::string& where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (def < lo) return makeError(where + ": config.json lacks \"" + key + "\"");
        out = def;
        return okStatus();
    }
    if (!it->is_number_integer() && !it->is_number_unsigned())
        return makeError(where + ": config.json \"" + key + "\" is not an integer");
    const int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
        return makeError(where + ": config.json \"" + key + "\" = " + std::to_string(v) + " is out of range");
    out = static_cast<int>(v);
    return okStatus();
}

Status getFloat(const json& j, const char* key, float def, float& out, const std::string& where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        out = def;
        return okStatus();
    }
    if (!it->is_number()) return makeError(where + ": config.json \"" + key + "\" is not a number");
    const double v = it->get<double>();
    if (!std::isfinite(v)) return makeError(where + ": config.json \"" + key + "\" is not finite");
    out = static_cast<float>(v);
    return okStatus();
}

#define QZ_TRY(expr)                      \
    do {                                  \
        auto _st = (expr);                \
        if (!_st) return _st.error();     \
    } while (0)

const TensorInfo* findAny(const Model& m, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (const TensorInfo* t = m.find(n)) return t;
    return nullptr;
}


// The keys of the newer families (transformers' configuration classes; core/infer/README.md).
Status readFamily(const json& j, const std::string& type, InferHParams& hp, const std::string& where) {
    const int kMax = 1 << 20;
    if (type == "qwen3" || type == "qwen3_moe" || type == "gemma3_text") hp.qkNorm = true;
    if (type != "llama" && type != "mistral" && type != "mixtral") hp.neoxGguf = true;
    if (type == "qwen3_moe") {
        QZ_TRY(getInt(j, "num_experts", -1, 1, 4096, hp.nExpert, where));
        QZ_TRY(getInt(j, "num_experts_per_tok", -1, 1, 4096, hp.nExpertUsed, where));
        QZ_TRY(getInt(j, "moe_intermediate_size", -1, 1, kMax * 4, hp.nFfExpert, where));
        auto nt = j.find("norm_topk_prob");
        hp.expertNormTopK = nt != j.end() && nt->is_boolean() && nt->get<bool>();
        int step = 1;
        QZ_TRY(getInt(j, "decoder_sparse_step", 1, 1, 4096, step, where));
        auto mo = j.find("mlp_only_layers");
        if (step != 1 || (mo != j.end() && mo->is_array() && !mo->empty()))
            return makeError(where + ": Qwen3-MoE with dense layers (decoder_sparse_step / mlp_only_layers) is "
                                     "not supported");
    } else if (type == "mixtral") {
        QZ_TRY(getInt(j, "num_local_experts", -1, 1, 4096, hp.nExpert, where));
        QZ_TRY(getInt(j, "num_experts_per_tok", -1, 1, 4096, hp.nExpertUsed, where));
        hp.nFfExpert = hp.nFf;
        hp.expertNormTopK = true;  // MixtralSparseMoeBlock always renormalises
    }
    if (hp.nExpert > 0 && hp.nExpertUsed > hp.nExpert)
        return makeError(where + ": num_experts_per_tok exceeds the number of experts");
    if (type == "gemma2" || type == "gemma3_text") {
        hp.gemma = true;
        float qpas = 0;
        QZ_TRY(getFloat(j, "query_pre_attn_scalar", static_cast<float>(hp.headDim), qpas, where));
        if (!(qpas > 0)) return makeError(where + ": query_pre_attn_scalar must be > 0");
        hp.attnScale = 1.0f / std::sqrt(qpas);
        QZ_TRY(getFloat(j, "final_logit_softcapping", 0.0f, hp.finalSoftcap, where));
        QZ_TRY(getFloat(j, "attn_logit_softcapping", 0.0f, hp.attnSoftcap, where));
        if (hp.finalSoftcap < 0 || hp.attnSoftcap < 0) return makeError(where + ": negative soft-capping");
        QZ_TRY(getInt(j, "sliding_window", 4096, 0, 1 << 24, hp.slidingWindow, where));
        hp.layerSliding.assign(hp.nLayer, 0);
        auto lt = j.find("layer_types");
        if (lt != j.end() && lt->is_array()) {  // newer configs list every layer's attention
            if (lt->size() != static_cast<size_t>(hp.nLayer))
                return makeError(where + ": layer_types does not list every layer");
            for (int l = 0; l < hp.nLayer; ++l) {
                const json& v = (*lt)[l];
                if (!v.is_string()) return makeError(where + ": layer_types holds a non-string");
                hp.layerSliding[l] = v.get<std::string>() == "sliding_attention";
            }
        } else if (type == "gemma2") {
            for (int l = 0; l < hp.nLayer; ++l) hp.layerSliding[l] = l % 2 == 0;  // even layers slide
        } else {
            int pattern = 6;
            QZ_TRY(getInt(j, "sliding_window_pattern", 6, 1, 4096, pattern, where));
            for (int l = 0; l < hp.nLayer; ++l) hp.layerSliding[l] = (l + 1) % pattern != 0;
        }
        if (hp.slidingWindow == 0) hp.layerSliding.clear();
        if (type == "gemma3_text") {
            QZ_TRY(getFloat(j, "rope_local_base_freq", 10000.0f, hp.ropeThetaSwa, where));
            if (!(hp.ropeThetaSwa > 0)) return makeError(where + ": rope_local_base_freq must be > 0");
        }
    }
    if (type == "phi3") {
        hp.fused = true;
        float prf = 1.0f;
        QZ_TRY(getFloat(j, "partial_rotary_factor", 1.0f, prf, where));
        if (!(prf > 0.0f && prf <= 1.0f)) return makeError(where + ": partial_rotary_factor out of range");
        hp.nRot = static_cast<int>(prf * static_cast<float>(hp.headDim));
        // Phi-3's sliding_window is not applied, as llama.cpp disables it for phi3 (core/infer/README.md).
    }
    return okStatus();
}

Result<InferHParams> fromConfig(const Model& model) {
    const std::string where = model.path;
    if (model.configJson.empty()) return makeError(where + ": no config.json, cannot run the model");
    json j;
    try {
        j = json::parse(model.configJson);
    } catch (const std::exception& e) {
        return makeError(where + ": config.json is not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) return makeError(where + ": config.json is not a JSON object");
    auto typeField = jsonStringField(j, "model_type", std::string(), where + ": config.json");
    if (!typeField) return typeField.error();
    std::string type = std::move(typeField.value());
    if (type.empty() && !model.architecture.empty()) type = model.architecture;

    InferHParams hp;
    hp.archName = type;
    constexpr int kMax = 1 << 20;
    if (type == "gpt2") {
        hp.arch = InferArch::Gpt2;
        QZ_TRY(getInt(j, "n_embd", -1, 1, kMax, hp.nEmbd, where));
        QZ_TRY(getInt(j, "n_layer", -1, 1, 4096, hp.nLayer, where));
        QZ_TRY(getInt(j, "n_head", -1, 1, 4096, hp.nHead, where));
        QZ_TRY(getInt(j, "n_positions", 1024, 1, 1 << 24, hp.nCtxTrain, where));
        int inner = 0;
        QZ_TRY(getInt(j, "n_inner", 0, 0, kMax * 4, inner, where));
        hp.nFf = inner > 0 ? inner : 4 * hp.nEmbd;
        QZ_TRY(getFloat(j, "layer_norm_epsilon", 1e-5f, hp.normEps, where));
        if (hp.nEmbd % hp.nHead != 0) return makeError(where + ": n_embd is not a multiple of n_head");
        hp.nHeadKv = hp.nHead;
        hp.headDim = hp.nEmbd / hp.nHead;
        hp.nRot = 0;
        hp.addBos = false;  // GPT-2's BPE vocabulary adds no BOS
        int bos = -1;
        QZ_TRY(getInt(j, "bos_token_id", -1, -1, kMax * 16, bos, where));
        hp.bosId = bos;
    } else if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3" || type == "qwen3_moe" ||
               type == "mixtral" || type == "gemma2" || type == "gemma3_text" || type == "gemma3" || type == "phi3") {
        hp.arch = InferArch::Llama;
        if (type == "gemma3") {  // Gemma3ForConditionalGeneration: the language model's keys in text_config
            auto tc = j.find("text_config");
            if (tc == j.end() || !tc->is_object()) return makeError(where + ": gemma3 config.json lacks text_config");
            json merged = *tc;
            for (auto it = j.begin(); it != j.end(); ++it)
                if (it.key() != "text_config" && !merged.contains(it.key())) merged[it.key()] = it.value();
            j = std::move(merged);
            type = "gemma3_text";
        }
        QZ_TRY(getInt(j, "hidden_size", -1, 1, kMax, hp.nEmbd, where));
        QZ_TRY(getInt(j, "num_hidden_layers", -1, 1, 4096, hp.nLayer, where));
        QZ_TRY(getInt(j, "num_attention_heads", -1, 1, 4096, hp.nHead, where));
        QZ_TRY(getInt(j, "num_key_value_heads", hp.nHead, 1, 4096, hp.nHeadKv, where));
        QZ_TRY(getInt(j, "intermediate_size", -1, 1, kMax * 4, hp.nFf, where));
        QZ_TRY(getInt(j, "max_position_embeddings", 2048, 1, 1 << 24, hp.nCtxTrain, where));
        int hd = 0;
        QZ_TRY(getInt(j, "head_dim", 0, 0, 4096, hd, where));
        if (hd == 0) {
            if (hp.nEmbd % hp.nHead != 0) return makeError(where + ": hidden_size is not a multiple of heads");
            hd = hp.nEmbd / hp.nHead;
        }
        hp.headDim = hd;
        hp.nRot = hd;
        QZ_TRY(getFloat(j, "rms_norm_eps", 1e-6f, hp.normEps, where));
        QZ_TRY(getFloat(j, "rope_theta", 10000.0f, hp.ropeTheta, where));
        int bos = -1;
        QZ_TRY(getInt(j, "bos_token_id", -1, -1, kMax * 16, bos, where));
        hp.bosId = bos;
        // llama.cpp: SPM (llama, mistral) vocabularies add BOS, qwen2's BPE does not.
        hp.addBos = type != "qwen2" && type != "qwen3" && type != "qwen3_moe";
        QZ_TRY(readFamily(j, type, hp, where));
        auto rs = j.find("rope_scaling");
        if (rs != j.end() && rs->is_object()) {
            auto rtField = jsonStringField(*rs, "rope_type", std::string(), where + ": config.json rope_scaling");
            if (!rtField) return rtField.error();
            std::string rt = std::move(rtField.value());
            if (rt.empty()) {
                auto legacy = jsonStringField(*rs, "type", std::string(), where + ": config.json rope_scaling");
                if (!legacy) return legacy.error();
                rt = std::move(legacy.value());
            }
            if (rt == "linear") {
                QZ_TRY(getFloat(*rs, "factor", 1.0f, hp.ropeLinearScale, where));
                if (!(hp.ropeLinearScale > 0)) return makeError(where + ": rope_scaling factor must be > 0");
            } else if (rt == "llama3") {
                hp.ropeLlama3 = true;
                QZ_TRY(getFloat(*rs, "factor", 8.0f, hp.llama3Factor, where));
                QZ_TRY(getFloat(*rs, "low_freq_factor", 1.0f, hp.llama3LowFreq, where));
                QZ_TRY(getFloat(*rs, "high_freq_factor", 4.0f, hp.llama3HighFreq, where));
                QZ_TRY(getInt(*rs, "original_max_position_embeddings", 8192, 1, 1 << 24, hp.llama3OrigCtx, where));
                if (!(hp.llama3Factor > 0) || !(hp.llama3HighFreq > hp.llama3LowFreq) || !(hp.llama3LowFreq > 0))
                    return makeError(where + ": invalid llama3 rope_scaling parameters");
            } else if (!rt.empty() && rt != "default") {
                return makeError(where + ": rope_scaling type \"" + rt + "\" is not supported by the evaluator");
            }
        }
    } else {
        return makeError(where + ": architecture \"" + type +
                         "\" is not supported by the evaluator (" + std::string(kEngineArchs) + " are)");
    }
    if (hp.nHead % hp.nHeadKv != 0) return makeError(where + ": attention heads not a multiple of KV heads");
    if (hp.nRot % 2 != 0) return makeError(where + ": head dimension must be even for RoPE");

    const TensorInfo* emb = hp.arch == InferArch::Gpt2
                                ? findAny(model, {"transformer.wte.weight", "wte.weight"})
                                : findAny(model, {"model.embed_tokens.weight"});
    if (!emb && hp.gemma && hp.qkNorm) {  // Gemma3ForConditionalGeneration's layouts (hparams.h hfPrefix)
        if ((emb = model.find("language_model.model.embed_tokens.weight"))) {
            hp.hfPrefix = "language_model.model.";
            hp.hfHead = "language_model.lm_head.weight";
        } else if ((emb = model.find("model.language_model.embed_tokens.weight"))) {
            hp.hfPrefix = "model.language_model.";
        }
    }
    if (!emb || emb->shape.size() != 2 || emb->shape[1] != hp.nEmbd)
        return makeError(where + ": token embedding missing or of the wrong shape");
    if (emb->shape[0] < 1 || emb->shape[0] > (1 << 24)) return makeError(where + ": vocabulary size out of range");
    hp.nVocab = static_cast<int>(emb->shape[0]);
    return hp;
}

}  // namespace

Result<InferHParams> readInferHParams(const Model& model) {
    if (model.format == ModelFormat::Gguf) return readInferHParamsGguf(model);
    return fromConfig(model);
}

}  // namespace qz

// Tiny seeded models of the architectures people quantize now, written in Hugging Face layout for tests:
// config.json with the real keys (and the defaults) of each transformers configuration class, one
// model.safetensors (F32) with the tensor names and shapes transformers' save_pretrained writes, and a
// tokenizer from the test models (bard-llama's SentencePiece model for the SentencePiece families,
// bard-gpt2's byte-level BPE for Qwen). Values come from a 64-bit xorshift seeded by the tensor name,
// so the same architecture gives the same bytes on every machine.
//   qwen3      Qwen3ForCausalLM        head_dim 32 × 4 heads = 128 ≠ hidden 64 (as Qwen3-30B-A3B), q/k norms
//   qwen3moe   Qwen3MoeForCausalLM     4 experts, top 2, moe_intermediate_size 256, router mlp.gate
//   mixtral    MixtralForCausalLM      8 experts (w1/w2/w3), top 2, router block_sparse_moe.gate
//   gemma2     Gemma2ForCausalLM       sandwich norms, zero-centred norm weights, tied embeddings, soft-caps
//   gemma3     Gemma3ForCausalLM       gemma3_text: + q/k norms, local/global RoPE bases, pattern 6
//   phi3       Phi3ForCausalLM         fused qkv_proj and gate_up_proj
// Variants of these (tinyVariantNames; tinyBase gives the family, the weights are the family's, seeded by the
// text model's tensor names):
//   gemma3-rope8   6 layers (layer 5 global) and rope_scaling {"rope_type": "linear", "factor": 8} on the
//                  global layers, as Gemma-3-4B/12B/27B
//   phi3-partial   partial_rotary_factor 0.75 (as Phi-4-mini): 48 of the 64 head dims rotate
//   gemma3-mm      Gemma3ForConditionalGeneration as transformers 4.50/4.51 save it: config model_type gemma3
//                  with text_config and vision_config, language_model.model.* tensors, a vision tower
//                  and a projector (vision_tower.*, multi_modal_projector.*)
//   gemma3-mm2     the same in transformers ≥ 4.52's layout: model.language_model.*, model.vision_tower.*,
//                  model.multi_modal_projector.*
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/result.h"
#include "io/safetensors_writer.h"

namespace qztest {

inline const std::vector<std::string>& tinyArchNames() {
    static const std::vector<std::string> names = {"qwen3", "qwen3moe", "mixtral", "gemma2", "gemma3", "phi3"};
    return names;
}

inline const std::vector<std::string>& tinyVariantNames() {
    static const std::vector<std::string> names = {"gemma3-rope8", "phi3-partial", "gemma3-mm", "gemma3-mm2"};
    return names;
}

// The family of a variant ("gemma3-mm" -> "gemma3").
inline std::string tinyBase(const std::string& arch) {
    const auto dash = arch.find('-');
    return dash == std::string::npos ? arch : arch.substr(0, dash);
}

// The text model's tensor-name prefix ("model.") in a variant's layout.
inline std::string tinyPrefix(const std::string& arch) {
    if (arch == "gemma3-mm") return "language_model.model.";
    if (arch == "gemma3-mm2") return "model.language_model.";
    return "model.";
}

struct TinyDims {
    // Rows of 256 so that the K-quants apply (hidden 256; ffn 256; experts' width 256).
    int64_t hidden = 256, ffn = 256, layers = 2, heads = 4, kvHeads = 2, headDim = 64, vocab = 512;
    int64_t experts = 0, expertsUsed = 0, expertFf = 0;
};

inline TinyDims tinyDims(const std::string& variant) {
    const std::string arch = tinyBase(variant);
    TinyDims d;
    if (variant == "gemma3-rope8") d.layers = 6;
    if (arch == "qwen3" || arch == "qwen3moe") {
        d.headDim = 32;  // explicit head_dim: 4 × 32 = 128 query rows, not the hidden 256
        d.vocab = 1024;  // bard-gpt2's BPE vocabulary
    }
    if (arch == "gemma2" || arch == "gemma3") d.headDim = 16;
    if (arch == "phi3") d.vocab = 523;  // bard-llama's 512 + Phi-3's 11 added tokens (added_tokens.json)
    if (arch == "qwen3moe") d.experts = 4, d.expertsUsed = 2, d.expertFf = 256;
    if (arch == "mixtral") d.experts = 8, d.expertsUsed = 2;  // 8 experts: llama-quantize's n_expert == 8 rules
    return d;
}

inline std::string tinyConfig(const std::string& variant) {
    const std::string arch = tinyBase(variant);
    const TinyDims d = tinyDims(variant);
    auto i = [](int64_t v) { return std::to_string(v); };
    const std::string common = "\"hidden_size\": " + i(d.hidden) + ", \"intermediate_size\": " + i(d.ffn) +
                               ", \"num_hidden_layers\": " + i(d.layers) + ", \"num_attention_heads\": " +
                               i(d.heads) + ", \"num_key_value_heads\": " + i(d.kvHeads) + ", \"vocab_size\": " +
                               i(d.vocab) + ", \"max_position_embeddings\": 512, \"initializer_range\": 0.02, " +
                               "\"attention_dropout\": 0.0, \"use_cache\": true, \"torch_dtype\": \"float32\", " +
                               "\"transformers_version\": \"4.51.0\"";
    if (arch == "qwen3")
        return "{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\", " + common +
               ", \"head_dim\": 32, \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, "
               "\"rope_scaling\": null, \"attention_bias\": false, \"use_sliding_window\": false, "
               "\"sliding_window\": null, \"max_window_layers\": 28, \"tie_word_embeddings\": false, "
               "\"bos_token_id\": 0, \"eos_token_id\": 0}\n";
    if (arch == "qwen3moe")
        return "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"model_type\": \"qwen3_moe\", " + common +
               ", \"head_dim\": 32, \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, "
               "\"rope_scaling\": null, \"attention_bias\": false, \"use_sliding_window\": false, "
               "\"sliding_window\": null, \"max_window_layers\": 48, \"tie_word_embeddings\": false, "
               "\"decoder_sparse_step\": 1, \"moe_intermediate_size\": 256, \"num_experts\": 4, "
               "\"num_experts_per_tok\": 2, \"norm_topk_prob\": true, \"output_router_logits\": false, "
               "\"router_aux_loss_coef\": 0.001, \"mlp_only_layers\": [], \"bos_token_id\": 0, "
               "\"eos_token_id\": 0}\n";
    if (arch == "mixtral")
        return "{\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", " + common +
               ", \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-05, \"rope_theta\": 1000000.0, "
               "\"sliding_window\": null, \"num_local_experts\": 8, \"num_experts_per_tok\": 2, "
               "\"output_router_logits\": false, \"router_aux_loss_coef\": 0.02, \"router_jitter_noise\": 0.0, "
               "\"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2}\n";
    if (arch == "gemma2")
        return "{\"architectures\": [\"Gemma2ForCausalLM\"], \"model_type\": \"gemma2\", " + common +
               ", \"head_dim\": 16, \"hidden_activation\": \"gelu_pytorch_tanh\", \"hidden_act\": "
               "\"gelu_pytorch_tanh\", \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"attention_bias\": false, "
               "\"query_pre_attn_scalar\": 16, \"sliding_window\": 32, \"final_logit_softcapping\": 30.0, "
               "\"attn_logit_softcapping\": 50.0, \"cache_implementation\": \"hybrid\", "
               "\"tie_word_embeddings\": true, \"bos_token_id\": 1, \"eos_token_id\": 2, \"pad_token_id\": 0}\n";
    if (arch == "gemma3") {
        const std::string text =
            common + ", \"head_dim\": 16, \"hidden_activation\": \"gelu_pytorch_tanh\", \"rms_norm_eps\": 1e-06, "
                     "\"rope_theta\": 1000000.0, \"rope_local_base_freq\": 10000.0, \"rope_scaling\": " +
            std::string(variant == "gemma3-rope8" ? "{\"factor\": 8.0, \"rope_type\": \"linear\"}" : "null") +
            ", \"attention_bias\": false, \"query_pre_attn_scalar\": 16, \"sliding_window\": 32, "
            "\"sliding_window_pattern\": 6, \"final_logit_softcapping\": null, \"attn_logit_softcapping\": null, "
            "\"cache_implementation\": \"hybrid\"";
        if (variant == "gemma3-mm" || variant == "gemma3-mm2")  // Gemma3Config: the text model's keys nested
            return "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"model_type\": \"gemma3\", "
                   "\"boi_token_index\": 255999, \"eoi_token_index\": 256000, \"image_token_index\": 262144, "
                   "\"mm_tokens_per_image\": 4, \"initializer_range\": 0.02, \"torch_dtype\": \"float32\", "
                   "\"transformers_version\": \"4.51.0\", \"text_config\": {\"model_type\": \"gemma3_text\", " +
                   text +
                   "}, \"vision_config\": {\"model_type\": \"siglip_vision_model\", \"hidden_size\": 8, "
                   "\"image_size\": 8, \"patch_size\": 4, \"num_attention_heads\": 2, \"num_hidden_layers\": 1, "
                   "\"intermediate_size\": 16, \"vision_use_head\": false}, \"bos_token_id\": 1, "
                   "\"eos_token_id\": 2, \"pad_token_id\": 0}\n";
        return "{\"architectures\": [\"Gemma3ForCausalLM\"], \"model_type\": \"gemma3_text\", " + text +
               ", \"tie_word_embeddings\": true, \"bos_token_id\": 1, \"eos_token_id\": 2, \"pad_token_id\": 0}\n";
    }
    // phi3
    return "{\"architectures\": [\"Phi3ForCausalLM\"], \"model_type\": \"phi3\", " + common +
           ", \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"rope_scaling\": null, "
           "\"original_max_position_embeddings\": 512, \"partial_rotary_factor\": " +
           std::string(variant == "phi3-partial" ? "0.75" : "1.0") + ", \"resid_pdrop\": 0.0, "
           "\"embd_pdrop\": 0.0, \"sliding_window\": 256, \"tie_word_embeddings\": false, \"bos_token_id\": 1, "
           "\"eos_token_id\": 512, \"pad_token_id\": 512}\n";
}

struct TinyTensor {
    std::string name;
    std::vector<int64_t> shape;
    bool norm = false;
};

// The tensors in save_pretrained's order (sorted names).
inline std::vector<TinyTensor> tinyTensors(const std::string& variant) {
    const std::string arch = tinyBase(variant);
    const TinyDims d = tinyDims(variant);
    const int64_t q = d.heads * d.headDim, kv = d.kvHeads * d.headDim;
    const bool gemma = arch == "gemma2" || arch == "gemma3";
    std::vector<TinyTensor> t;
    if (!gemma) t.push_back({"lm_head.weight", {d.vocab, d.hidden}});
    t.push_back({"model.embed_tokens.weight", {d.vocab, d.hidden}});
    for (int64_t l = 0; l < d.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        t.push_back({p + "input_layernorm.weight", {d.hidden}, true});
        if (arch == "qwen3moe" || arch == "mixtral") {
            const std::string moe = arch == "mixtral" ? "block_sparse_moe." : "mlp.";
            const int64_t f = arch == "mixtral" ? d.ffn : d.expertFf;
            for (int64_t e = 0; e < d.experts; ++e) {
                const std::string ex = p + moe + "experts." + std::to_string(e) + ".";
                if (arch == "mixtral") {
                    t.push_back({ex + "w1.weight", {f, d.hidden}});
                    t.push_back({ex + "w2.weight", {d.hidden, f}});
                    t.push_back({ex + "w3.weight", {f, d.hidden}});
                } else {
                    t.push_back({ex + "down_proj.weight", {d.hidden, f}});
                    t.push_back({ex + "gate_proj.weight", {f, d.hidden}});
                    t.push_back({ex + "up_proj.weight", {f, d.hidden}});
                }
            }
            t.push_back({p + moe + "gate.weight", {d.experts, d.hidden}});
        } else if (arch == "phi3") {
            t.push_back({p + "mlp.down_proj.weight", {d.hidden, d.ffn}});
            t.push_back({p + "mlp.gate_up_proj.weight", {2 * d.ffn, d.hidden}});
        } else {
            t.push_back({p + "mlp.down_proj.weight", {d.hidden, d.ffn}});
            t.push_back({p + "mlp.gate_proj.weight", {d.ffn, d.hidden}});
            t.push_back({p + "mlp.up_proj.weight", {d.ffn, d.hidden}});
        }
        t.push_back({p + "post_attention_layernorm.weight", {d.hidden}, true});
        if (gemma) {
            t.push_back({p + "post_feedforward_layernorm.weight", {d.hidden}, true});
            t.push_back({p + "pre_feedforward_layernorm.weight", {d.hidden}, true});
        }
        if (arch == "qwen3" || arch == "qwen3moe" || arch == "gemma3")
            t.push_back({p + "self_attn.k_norm.weight", {d.headDim}, true});
        if (arch == "phi3") {
            t.push_back({p + "self_attn.o_proj.weight", {d.hidden, q}});
            t.push_back({p + "self_attn.qkv_proj.weight", {q + 2 * kv, d.hidden}});
        } else {
            t.push_back({p + "self_attn.k_proj.weight", {kv, d.hidden}});
            t.push_back({p + "self_attn.o_proj.weight", {d.hidden, q}});
        }
        if (arch == "qwen3" || arch == "qwen3moe" || arch == "gemma3")
            t.push_back({p + "self_attn.q_norm.weight", {d.headDim}, true});
        if (arch != "phi3") {
            t.push_back({p + "self_attn.q_proj.weight", {q, d.hidden}});
            t.push_back({p + "self_attn.v_proj.weight", {kv, d.hidden}});
        }
    }
    t.push_back({"model.norm.weight", {d.hidden}, true});
    const std::string prefix = tinyPrefix(variant);
    if (prefix != "model.") {
        for (auto& x : t)
            if (x.name.rfind("model.", 0) == 0) x.name = prefix + x.name.substr(6);
        // A little of the vision side, which the text model ignores.
        const std::string v = variant == "gemma3-mm2" ? "model." : "";
        t.push_back({v + "multi_modal_projector.mm_input_projection_weight", {8, d.hidden}});
        t.push_back({v + "multi_modal_projector.mm_soft_emb_norm.weight", {8}, true});
        t.push_back({v + "vision_tower.vision_model.embeddings.patch_embedding.bias", {8}});
        t.push_back({v + "vision_tower.vision_model.embeddings.patch_embedding.weight", {8, 3, 4, 4}});
        t.push_back({v + "vision_tower.vision_model.post_layernorm.weight", {8}, true});
        std::sort(t.begin(), t.end(), [](const TinyTensor& a, const TinyTensor& b) { return a.name < b.name; });
    }
    return t;
}

// Seeded values: weights uniform in ±0.1 (embeddings ±0.5); norm weights 1 ± 0.1, or ± 0.1 around 0
// for Gemma (which multiplies by 1 + w).
inline std::vector<float> tinyValues(const std::string& variant, const TinyTensor& t) {
    const std::string arch = tinyBase(variant);
    std::string seed = t.name;  // the text model's name: a variant's layout holds the family's weights
    const std::string prefix = tinyPrefix(variant);
    if (seed.rfind(prefix, 0) == 0) seed = "model." + seed.substr(prefix.size());
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (char c : seed) s = (s ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
    int64_t n = 1;
    for (int64_t v : t.shape) n *= v;
    std::vector<float> out(static_cast<size_t>(n));
    const bool gemma = arch == "gemma2" || arch == "gemma3";
    const float scale = t.name.find("embed_tokens") != std::string::npos ? 0.5f : 0.1f;
    for (auto& v : out) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const float u = static_cast<float>((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;  // [-1, 1)
        v = t.norm ? (gemma ? 0.1f * u : 1.0f + 0.1f * u) : scale * u;
    }
    return out;
}

// Writes the model into dir (created); tokenizer files are copied from testData/models/{bard-llama|bard-gpt2}.
inline qz::Status writeTinyModel(const std::string& dir, const std::string& variant, const std::string& testData) {
    namespace fs = std::filesystem;
    const std::string arch = tinyBase(variant);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return qz::makeError("cannot create " + dir + ": " + ec.message());
    const auto tensors = tinyTensors(variant);
    std::vector<qz::SafetensorsTensorDecl> decls;
    for (const auto& t : tensors) decls.push_back({t.name, qz::DType::F32, t.shape});
    qz::SafetensorsWriter w;
    if (auto st = w.open(dir + "/model.safetensors", decls); !st) return st;
    for (const auto& t : tensors)
        if (auto st = w.writeTensorFromF32(tinyValues(variant, t)); !st) return st;
    if (auto st = w.finish(); !st) return st;
    {
        std::ofstream f(dir + "/config.json");
        f << tinyConfig(variant);
        if (!f) return qz::makeError("cannot write " + dir + "/config.json");
    }
    const bool bpe = arch == "qwen3" || arch == "qwen3moe";
    const std::string src = testData + (bpe ? "/models/bard-gpt2" : "/models/bard-llama");
    const std::vector<std::string> files = bpe ? std::vector<std::string>{"tokenizer.json", "vocab.json", "merges.txt",
                                                                           "special_tokens_map.json",
                                                                           "tokenizer_config.json"}
                                               : std::vector<std::string>{"tokenizer.model", "tokenizer_config.json",
                                                                           "special_tokens_map.json"};
    for (const auto& name : files) {
        fs::copy_file(src + "/" + name, dir + "/" + name, fs::copy_options::overwrite_existing, ec);
        if (ec) return qz::makeError("cannot copy " + src + "/" + name + ": " + ec.message());
    }
    if (arch == "phi3") {  // Phi-3's added tokens, in its order (ids 32000.. there, 512.. here)
        std::ofstream f(dir + "/added_tokens.json");
        f << "{\"<|endoftext|>\": 512, \"<|assistant|>\": 513, \"<|placeholder1|>\": 514, "
             "\"<|placeholder2|>\": 515, \"<|placeholder3|>\": 516, \"<|placeholder4|>\": 517, "
             "\"<|system|>\": 518, \"<|end|>\": 519, \"<|placeholder5|>\": 520, \"<|placeholder6|>\": 521, "
             "\"<|user|>\": 522}\n";
        if (!f) return qz::makeError("cannot write " + dir + "/added_tokens.json");
    }
    return qz::okStatus();
}

}  // namespace qztest

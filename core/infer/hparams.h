// Hyper-parameters of a decoder-only transformer, as the inference engine needs them.
//
// Sources:
//  * Hugging Face config.json (Model::configJson): llama / mistral / qwen2 keys hidden_size,
//    intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
//    rms_norm_eps, rope_theta, rope_scaling, max_position_embeddings, vocab_size; gpt2 keys n_embd,
//    n_layer, n_head, n_inner, n_positions, layer_norm_epsilon, vocab_size.
//  * GGUF metadata (Model::formatData, gguf/gguf_file.h): <arch>.embedding_length, .block_count,
//    .feed_forward_length, .attention.head_count(_kv), .attention.layer_norm_rms_epsilon /
//    .layer_norm_epsilon, .rope.freq_base, .rope.dimension_count, .context_length,
//    tokenizer.ggml.bos_token_id / add_bos_token.
// Every value is range-checked: a model file is hostile input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/model.h"

namespace qz {

enum class InferArch { Llama, Gpt2 };

// The architectures the engine runs, for messages.
inline constexpr const char* kEngineArchs =
    "llama, mistral, qwen2, qwen3, qwen3moe, mixtral, gemma2, gemma3, phi3, gpt2";

struct InferHParams {
    InferArch arch = InferArch::Llama;
    std::string archName;     // "llama", "mistral", "qwen2", "gpt2" as found in the file
    int nVocab = 0;           // from the token embedding's shape (config vocab_size only cross-checked)
    int nEmbd = 0;
    int nLayer = 0;
    int nHead = 0;
    int nHeadKv = 0;
    int headDim = 0;
    int nFf = 0;
    int nCtxTrain = 0;        // max_position_embeddings / n_positions / <arch>.context_length
    int nRot = 0;             // rotary dimensions per head (= headDim for llama)
    float normEps = 1e-5f;    // RMSNorm (llama) or LayerNorm (gpt2) epsilon
    float ropeTheta = 10000.0f;
    float ropeLinearScale = 1.0f;  // positions are divided by this (rope_scaling type "linear")
    // rope_scaling type "llama3": per-frequency divisors computed from the config (empty otherwise;
    // a GGUF carries them as rope_freqs.weight and the loader fills this from that tensor).
    bool ropeLlama3 = false;
    float llama3Factor = 1, llama3LowFreq = 1, llama3HighFreq = 4;
    int llama3OrigCtx = 8192;
    int32_t bosId = -1;
    bool addBos = false;      // whether the vocabulary adds BOS (llama-perplexity replaces chunk starts)

    // The newer llama-like families (core/infer/README.md): all off for llama / mistral / qwen2.
    bool qkNorm = false;          // qwen3, qwen3moe, gemma3: RMSNorm over head_dim on q and k before RoPE
    bool gemma = false;           // gemma2, gemma3: sandwich norms, GeGLU (tanh GELU), embeddings·sqrt(nEmbd)
    bool fused = false;           // phi3: fused qkv and gate_up projections
    bool neoxGguf = false;        // GGUF Q/K rows in HF order (no un-permute): all but llama / mistral
    int nExpert = 0;              // mixture of experts (qwen3moe, mixtral): 0 = dense
    int nExpertUsed = 0;
    int nFfExpert = 0;            // an expert's intermediate size
    bool expertNormTopK = false;  // renormalise the top-k routing weights to sum 1
    float attnScale = 0;          // attention score scale; 0 = 1/sqrt(headDim)
    float attnSoftcap = 0;        // gemma2: scores = c·tanh(scores/c); 0 = off
    float finalSoftcap = 0;       // gemma2: logits = c·tanh(logits/c); 0 = off
    int slidingWindow = 0;        // sliding layers see keys with i − j < slidingWindow (0 = none)
    std::vector<uint8_t> layerSliding;  // [nLayer]: 1 = sliding-window layer (empty = none)
    float ropeThetaSwa = 0;       // gemma3: RoPE base of the sliding layers (0 = ropeTheta), no scaling
    // HF tensor names: the decoder's prefix ("model." + "embed_tokens.weight", "layers.N.", "norm.weight") and
    // the output head. A multimodal Gemma 3 nests the language model: "language_model.model." with
    // "language_model.lm_head.weight" (transformers < 4.52), or "model.language_model." with "lm_head.weight".
    std::string hfPrefix = "model.";
    std::string hfHead = "lm_head.weight";
};

// Reads the hyper-parameters of an HF folder / safetensors file with config.json, or of a GGUF.
// nVocab is taken from the token-embedding tensor.
Result<InferHParams> readInferHParams(const Model& model);
// The GGUF part (infer/hparams_gguf.cpp).
Result<InferHParams> readInferHParamsGguf(const Model& model);

}  // namespace qz

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

#include "common/result.h"
#include "model/model.h"

namespace qz {

enum class InferArch { Llama, Gpt2 };

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
};

// Reads the hyper-parameters of an HF folder / safetensors file with config.json, or of a GGUF.
// nVocab is taken from the token-embedding tensor.
Result<InferHParams> readInferHParams(const Model& model);
// The GGUF part (infer/hparams_gguf.cpp).
Result<InferHParams> readInferHParamsGguf(const Model& model);

}  // namespace qz

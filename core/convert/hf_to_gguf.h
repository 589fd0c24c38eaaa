// How a Hugging Face model becomes a GGUF file, as llama.cpp's convert_hf_to_gguf.py does it
// (README.md A.4–A.6; core/gguf/README.md A.2): hyper-parameters → {arch}.* keys, HF names → GGUF names,
// the per-tensor transforms (the llama family's Q/K row permutation, GPT-2's Conv1D transposition),
// and which tensors must stay F32.
//
// Supported: llama (and Llama-3 byte-level BPE vocabularies), mistral (written as llama, as convert
// does), qwen2 (q/k/v biases, no permutation: llama.cpp's qwen2 uses NEOX RoPE), gpt2, and
// (core/convert/README.md B):
//  * qwen3: per-head q/k RMSNorm weights (attn_q_norm / attn_k_norm), explicit head_dim, NEOX RoPE;
//  * qwen3moe and mixtral: the router (ffn_gate_inp, kept F32) and the experts of a layer stacked into
//    3-D tensors ffn_{gate,up,down}_exps [in, out, experts] in expert order; mixtral is written as
//    "llama" with permuted q/k, as convert does;
//  * gemma2 and gemma3 (text; also the language model of Gemma3ForConditionalGeneration): the sandwich
//    norms (post_attention_norm, ffn_norm = pre-feedforward, post_ffw_norm), 1 added to every norm
//    weight (gemma3: q/k norms too), lm_head dropped (llama.cpp ties it to token_embd), soft-capping,
//    sliding window and the local RoPE base as metadata;
//  * phi3: the fused qkv_proj (attn_qkv) and gate_up_proj (ffn_up) written as they are stored.
// The plan holds no tensor data; produceTensor() makes one tensor's F32 values on demand, so an
// export streams tensor by tensor.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tokenizer/vocab.h"

namespace qz {

struct ArchParams {
    std::string hfType;       // config.json model_type
    std::string ggufArch;     // "llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3", "gpt2"
    int64_t nLayer = 0, nEmbd = 0, nFf = 0, nHead = 0, nHeadKv = 0, headDim = 0, nCtx = 0, nVocab = 0;
    // Mixture of experts (qwen3moe, mixtral): 0 experts = dense.
    int64_t nExpert = 0, nExpertUsed = 0, expertFf = 0;  // expertFf: qwen3moe moe_intermediate_size
    bool normTopkProb = false;                           // qwen3moe (not written: llama.cpp always renormalizes)
    // Gemma: soft-capping (0 = off), sliding window (0 = none), query_pre_attn_scalar, layer pattern.
    double attnSoftcap = 0, finalSoftcap = 0, queryPreAttnScalar = 0;
    int64_t slidingWindow = 0, slidingPattern = 0;
    double ropeThetaLocal = 0;        // gemma3 rope_local_base_freq (sliding layers)
    double ropeLinearFactor = 0;      // gemma3 rope_scaling {"rope_type": "linear"} (global layers); 0 = none
    int64_t nCtxOrig = 0;             // phi3 original_max_position_embeddings
    int64_t ropeDims = 0;             // phi3 rope.dimension_count (partial_rotary_factor · head_dim)
    bool gemmaNorms() const { return ggufArch == "gemma2" || ggufArch == "gemma3"; }
    bool headDimExplicit = false;  // config.json has head_dim (→ key_length / value_length written)
    double ropeTheta = 10000.0, normEps = 1e-5;
    bool tiedEmbeddings = false;
    // rope_scaling {"rope_type": "llama3", ...} (Llama 3.1+): written as a rope_freqs.weight tensor
    bool llama3Rope = false;
    double llama3Factor = 8.0, llama3LowFreq = 1.0, llama3HighFreq = 4.0, llama3OrigCtx = 8192.0;
};

// The config.json model types the GGUF export converts, for messages ("llama, mistral, ...").
std::string supportedModelTypes();

// Reads the hyper-parameters from config.json text. Errors name the file and the missing key.
Result<ArchParams> archParamsFromConfig(const std::string& configJson, const std::string& where);

// AddOne: Gemma's norm weights are stored zero-centred (HF multiplies by 1 + w); convert adds 1.
enum class TensorTransform { None, PermuteQ, PermuteK, Transpose, AddOne };

struct PlannedTensor {
    std::string ggufName;
    std::vector<int64_t> ne;     // GGUF order (ne[0] innermost)
    size_t source = 0;           // index into Model::tensors
    TensorTransform transform = TensorTransform::None;
    bool forceF32 = false;       // A.6: 1-D, norms, biases, position_embd, ...
    std::vector<float> generated;  // values of a tensor convert generates (rope_freqs); source unused
    std::vector<size_t> stacked;   // experts: Model::tensors indices stacked along the outermost axis
};

struct ConversionPlan {
    ArchParams arch;
    std::vector<GgufKV> kvs;              // general.*, {arch}.*, tokenizer.* — file_type is filled by the exporter
    std::vector<PlannedTensor> tensors;   // in convert_hf_to_gguf's order (HF names sorted)
    std::vector<std::string> notes;       // dropped tensors, vocabulary warnings
};

// Builds the plan for a HF model (folder or .safetensors with config.json and tokenizer beside it).
Result<ConversionPlan> planHfToGguf(const Model& model);

// The F32 values of one planned tensor (reads, converts to F32 exactly, applies the transform).
Status produceTensor(const Model& model, const ConversionPlan& plan, const PlannedTensor& t,
                     std::vector<float>& out);

// Llama 3.1's RoPE frequency factors, as convert_hf_to_gguf.py writes them into rope_freqs.weight:
// for each of headDim/2 frequencies f = 1/θ^(2i/d) (float32), wavelength λ = 2π/f:
// λ < origCtx/highFreq → 1; λ > origCtx/lowFreq → factor; otherwise 1/((1−s)/factor + s) with
// s = (origCtx/λ − lowFreq)/(highFreq − lowFreq).
std::vector<float> llama3RopeFactors(const ArchParams& a);

// The Q/K permutation of A.5 on a [rows × cols] matrix (or a bias: cols = 1).
void permuteQK(const float* in, float* out, int64_t rows, int64_t cols, int64_t nHeads);

// "Bard Llama" from "bard-llama", as convert names models; "3.4M" size labels.
std::string generalNameFromDir(const std::string& dirName);
std::string sizeLabel(uint64_t parameters);

}  // namespace qz

// How a Hugging Face model becomes a GGUF file, as llama.cpp's convert_hf_to_gguf.py does it
// (README.md A.4–A.6; core/gguf/README.md A.2): hyper-parameters → {arch}.* keys, HF names → GGUF names,
// the per-tensor transforms (the llama family's Q/K row permutation, GPT-2's Conv1D transposition),
// and which tensors must stay F32.
//
// Supported: llama (and Llama-3 byte-level BPE vocabularies), mistral (written as llama, as convert
// does), qwen2 (q/k/v biases, no permutation: llama.cpp's qwen2 uses NEOX RoPE), gpt2.
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
    std::string ggufArch;     // "llama", "qwen2", "gpt2"
    int64_t nLayer = 0, nEmbd = 0, nFf = 0, nHead = 0, nHeadKv = 0, headDim = 0, nCtx = 0, nVocab = 0;
    bool headDimExplicit = false;  // config.json has head_dim (→ key_length / value_length written)
    double ropeTheta = 10000.0, normEps = 1e-5;
    bool tiedEmbeddings = false;
    // rope_scaling {"rope_type": "llama3", ...} (Llama 3.1+): written as a rope_freqs.weight tensor
    bool llama3Rope = false;
    double llama3Factor = 8.0, llama3LowFreq = 1.0, llama3HighFreq = 4.0, llama3OrigCtx = 8192.0;
};

// Reads the hyper-parameters from config.json text. Errors name the file and the missing key.
Result<ArchParams> archParamsFromConfig(const std::string& configJson, const std::string& where);

enum class TensorTransform { None, PermuteQ, PermuteK, Transpose };

struct PlannedTensor {
    std::string ggufName;
    std::vector<int64_t> ne;     // GGUF order (ne[0] innermost)
    size_t source = 0;           // index into Model::tensors
    TensorTransform transform = TensorTransform::None;
    bool forceF32 = false;       // A.6: 1-D, norms, biases, position_embd, ...
    std::vector<float> generated;  // values of a tensor convert generates (rope_freqs); source unused
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

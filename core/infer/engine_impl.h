// Internal state of qz::Engine (weights as stored in the mapped model file, KV cache). Shared by
// infer/engine.cpp (forward pass), infer/engine_load.cpp (weight loading) and infer/engine_linear.cpp
// (linear layers); not part of the public API.
#pragma once

#include <Eigen/Core>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/dtype.h"
#include "common/mapped_file.h"
#include "infer/engine.h"

namespace qz {

using InferMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;  // column-major

// A 2-D weight [rows][cols] (rows = outputs of a linear layer, or the vocabulary of the embedding):
// either a view of its bytes in the mapped model file, in the stored type (F32, F16, BF16 or a ggml
// block type; row r at view + r·rowStride), or, once overridden, owned F32 values in the same row
// order, or a source that decodes rows on demand (infer/weight_source.h; takes precedence over both).
// Only overridden tensors take memory.
struct StoredMatrix {
    int64_t rows = 0, cols = 0;
    DType type = DType::F32;        // of the view
    const uint8_t* view = nullptr;  // nullptr: no stored tensor (an optional tensor the file lacks)
    size_t rowStride = 0;
    std::vector<float> owned;       // non-empty: replaces the view (row-major rows × cols)
    // Set: replaces the view and owned (Engine::setWeightSource).
    std::shared_ptr<const WeightRowSource> source;

    bool present() const { return view != nullptr || !owned.empty() || source; }
    bool isOwned() const { return !owned.empty(); }
    // Row r as F32 into dst (cols values).
    void readRow(int64_t r, float* dst) const;
};

struct InferLinear {
    std::string name;      // the model's tensor name of the weight (reported to the observer)
    int nIn = 0, nOut = 0;
    StoredMatrix w;        // [nOut][nIn] in the stored row order
    // Non-empty: output i of the layer is stored row rowOrder[i] (GGUF llama Q/K rows are stored in
    // ggml's interleaved-pair order; the engine's RoPE wants HF's, core/convert/README.md A.5).
    std::vector<int32_t> rowOrder;
    std::vector<float> b;  // [nOut] in the engine's (HF) order, or empty
    bool present() const { return w.present(); }
};

struct InferLayer {
    std::vector<float> attnNorm, attnNormB, ffnNorm, ffnNormB;  // *B: LayerNorm biases (gpt2)
    std::vector<float> postAttnNorm, postFfnNorm;  // gemma's sandwich norms (ffnNorm = pre-feedforward)
    std::vector<float> qNorm, kNorm;               // [headDim] (qwen3, qwen3moe, gemma3)
    InferLinear q, k, v;   // llama
    InferLinear qkv;       // gpt2 fused [3·nEmbd][nEmbd]; phi3 fused [q | k | v]
    InferLinear o, gate, up, down;  // gate: llama only; phi3: up = fused [gate | up], no gate
    // Mixture of experts: router [nExpert][nEmbd]; one linear per expert (gate/up [nFfExpert][nEmbd],
    // down [nEmbd][nFfExpert]), viewing the HF per-expert tensor or its slice of the GGUF 3-D tensor.
    // Their names are what the observer reports: the HF tensor name, or "<GGUF name>#e" (engine.h).
    InferLinear router;
    std::vector<InferLinear> gateExps, upExps, downExps;
};

// Where a model tensor lives inside the engine, and how it was transformed at load (for setWeight).
struct InferWeightSlot {
    StoredMatrix* matrix = nullptr;  // 2-D weights (linear layers, the token embedding)
    std::vector<float>* dst = nullptr;  // small tensors held as F32 (norms, biases, GPT-2 positions)
    std::vector<int64_t> shape;  // the model's shape (outermost first)
    bool conv1d = false;         // stored [in][out] in the model, held as an F32 transposed copy
    int unpermuteHeads = 0;      // > 0: F32 rows un-permuted with this many heads (GGUF Q/K biases)
    bool addOne = false;         // HF Gemma norm weights: the engine holds 1 + w (small tensors)
    // A GGUF 3-D expert tensor [nExpert][rows][cols]: expert e is experts[e]'s matrix (matrix unused).
    std::vector<StoredMatrix*> experts;
    // The stored bytes of a small tensor, for resetWeight (nullptr: came from an override or absent).
    const uint8_t* srcBytes = nullptr;
    DType srcType = DType::F32;
};

struct Engine::Impl {
    InferHParams hp;
    int threads = 1;
    int nCtxMax = 0;
    bool ggmlActivations = false;  // linear layers encode activations as ggml-cpu does

    std::vector<std::shared_ptr<MappedFile>> files;  // keeps the weight views valid

    StoredMatrix tokEmbd;        // [nVocab][nEmbd]
    std::string tokEmbdName;
    std::vector<float> posEmbd;  // gpt2: [nCtxTrain][nEmbd]
    std::vector<float> outNorm, outNormB;
    InferLinear output;          // LM head; absent -> tied to tokEmbd
    std::vector<double> ropeInvFreq;  // [nRot/2]: θ^(−2i/nRot) / freq factor
    std::vector<double> ropeInvFreqSwa;  // gemma3's sliding layers (local base), else empty
    std::vector<InferLayer> layers;

    std::vector<InferMat> kCache, vCache;  // per layer [nHeadKv·headDim × capacity]
    int cacheCap = 0;
    int nCached = 0;                       // positions filled (for checks)
    int layerLimit = 0;                    // blocks eval() runs (0 = all)

    bool kvF16 = true;
    std::vector<float> geluTable;          // ggml GELU by fp16 bit pattern (empty = exact float GELU; gpt2, gemma)

    std::unordered_map<std::string, InferWeightSlot> slots;  // model tensor name -> engine storage

    LinearObserver observer;
};

// Sets a slot's tensor from values in the model tensor's own layout (transpose for Conv1D, un-permute
// for small Q/K tensors; 2-D weights keep the stored row order).
void assignWeight(const InferWeightSlot& slot, std::vector<float> values);

// Y[i + t·ldy] = Σ_k W[row(i)][k]·X[k + t·nIn] for i < nOut, t < n: the one linear-layer product of the
// engine (bias not included). W from its stored type (infer/engine_linear.cpp); rowOrder (may be empty)
// maps output i to stored row rowOrder[i]. ggmlActivations: quantized / 16-bit weights take
// activations encoded as ggml-cpu does (ggml/vec_dot.h); otherwise F32 activations against the
// weights widened to F32 a panel of rows at a time.
void storedLinear(const StoredMatrix& W, const std::vector<int32_t>& rowOrder, const float* X, int64_t n,
                  float* Y, int64_t ldy, int threads, bool ggmlActivations);

// Types a StoredMatrix may hold: F32, F16, BF16 and the ggml block types we can dequantize.
bool storedTypeSupported(DType t);

// Reads every weight of the model into impl (infer/engine_load.cpp).
Status loadEngineWeights(const Model& model, const EngineOptions& options, ProgressFn progress,
                         Engine::Impl& impl);

}  // namespace qz

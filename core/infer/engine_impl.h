// Internal state of qz::Engine (weights as F32, KV cache). Shared by infer/engine.cpp (forward pass)
// and infer/engine_load.cpp (weight loading); not part of the public API.
#pragma once

#include <Eigen/Core>
#include <string>
#include <unordered_map>
#include <vector>

#include "infer/engine.h"

namespace qz {

using InferMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;  // column-major

struct InferLinear {
    std::string name;      // the model's tensor name of the weight (reported to the observer)
    int nIn = 0, nOut = 0;
    std::vector<float> w;  // row-major [nOut][nIn]
    std::vector<float> b;  // [nOut] or empty
    bool present() const { return !w.empty(); }
};

struct InferLayer {
    std::vector<float> attnNorm, attnNormB, ffnNorm, ffnNormB;  // *B: LayerNorm biases (gpt2)
    std::vector<float> postAttnNorm, postFfnNorm;  // gemma's sandwich norms (ffnNorm = pre-feedforward)
    std::vector<float> qNorm, kNorm;               // [headDim] (qwen3, qwen3moe, gemma3)
    InferLinear q, k, v;   // llama
    InferLinear qkv;       // gpt2 fused [3·nEmbd][nEmbd]; phi3 fused [q | k | v]
    InferLinear o, gate, up, down;  // gate: llama only; phi3: up = fused [gate | up], no gate
    // Mixture of experts: router [nExpert][nEmbd]; the experts stacked along the rows, expert e's
    // matrix at rows e·rows .. (gate/up: [nExpert·nFfExpert][nEmbd], down: [nExpert·nEmbd][nFfExpert]).
    InferLinear router, gateExps, upExps, downExps;
    // The name the observer reports for expert e of each stacked tensor: the HF per-expert tensor
    // name, or "<GGUF name>#e" (engine.h).
    std::vector<std::string> gateExpNames, upExpNames, downExpNames;
};

// Where a model tensor lives inside the engine, and how it was transformed at load (for setWeight).
struct InferWeightSlot {
    std::vector<float>* dst = nullptr;
    std::vector<int64_t> shape;  // the model's shape (outermost first)
    bool conv1d = false;         // stored [in][out] in the model, transposed to [out][in]
    int unpermuteHeads = 0;      // > 0: GGUF Q/K rows un-permuted with this many heads
    bool addOne = false;         // HF Gemma norm weights: the engine holds 1 + w
    size_t offset = 0;           // the tensor fills dst[offset .. offset + numel) (an HF expert)
};

struct Engine::Impl {
    InferHParams hp;
    int threads = 1;
    int nCtxMax = 0;

    std::vector<float> tokEmbd;  // [nVocab][nEmbd]
    std::string tokEmbdName;
    std::vector<float> posEmbd;  // gpt2: [nCtxTrain][nEmbd]
    std::vector<float> outNorm, outNormB;
    InferLinear output;          // LM head; w empty -> tied to tokEmbd
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

// The transforms of load applied to values of a model tensor (un-permute, transpose), in place.
void applyWeightTransforms(const InferWeightSlot& slot, std::vector<float>& values);

// Reads every weight of the model into impl (infer/engine_load.cpp).
Status loadEngineWeights(const Model& model, const EngineOptions& options, ProgressFn progress,
                         Engine::Impl& impl);

}  // namespace qz

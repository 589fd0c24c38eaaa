// Which linear layers of a model GPTQ quantizes, in which calibration groups (README.md D.1), and the
// per-layer result files that make long runs resumable.
//
// Only linear layers inside the decoder blocks are quantized (embeddings, norms, lm_head stay as they
// are). Groups per block, in AutoGPTQ's true-sequential order:
//   llama / mistral / qwen2 (model.layers.N.): [k_proj, v_proj, q_proj], [o_proj], [up_proj, gate_proj],
//     [down_proj]
//   gpt2 ((transformer.)h.N.): [attn.c_attn], [attn.c_proj], [mlp.c_fc], [mlp.c_proj]; these are Conv1D
//     weights stored [in, out]: GPTQ works on the transpose [out, in] and the QuantLinear has
//     in = weight.shape[0].
//   qwen3_moe / mixtral (README.md D.6): [q_proj, k_proj, v_proj], [o_proj], every expert's [gate, up]
//     (mixtral: w1, w3), every expert's [down] (w2); the router (mlp.gate / block_sparse_moe.gate) stays
//     as it is. An expert's layers see only the tokens routed to it, so their Hessians are per expert
//     (LinearLayer::inputName), not per group.
//
// Layer result file (resume state, "<layer name>.qzl" in the run's temporary folder): "QZGPTQL1",
// u32 JSON length, JSON {name, rows, cols, bits, groupSize, nGroups, loss, dampUsed, relErr, relErrRtn,
// seconds, tokens, fallback (the last two optional)}, then codes u8 [rows·cols], scales f32 [nGroups·rows], zeros i32 [nGroups·rows],
// g_idx i32 [cols]. Written to a temporary name and renamed, so a file either is complete or absent;
// every size is checked on reading.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "gptq/gptq_quant.h"
#include "model/model.h"

namespace qz::gptq {

struct LinearLayer {
    std::string prefix;      // module path, e.g. "model.layers.0.self_attn.q_proj"
    std::string weightName;  // prefix + ".weight"
    std::string biasName;    // prefix + ".bias" if the model has it, else empty
    bool conv1d = false;     // stored [in, out]
    int out = 0, in = 0;
    // The weight name under which the engine's observer reports this layer's input (infer/engine.h
    // LinearObserver): layers with the same inputName share one Hessian. Dense groups: the group's first
    // layer; an expert's gate/up: its gate; an expert's down: itself.
    std::string inputName;
    int expert = -1;         // the expert index of an MoE expert's layer, else -1
};

struct LayerPlan {
    // blocks[b][g] = the layers of group g of block b, in quantization order.
    std::vector<std::vector<std::vector<LinearLayer>>> blocks;
    int experts = 0;  // experts per block of an MoE model (0: dense)
    size_t layerCount() const;
};

// Fails for unsupported architectures or when an expected layer is missing / not 2-D.
Result<LayerPlan> planLayers(const Model& model);

struct LayerRecord {
    std::string name;        // weight tensor name
    LayerResult result;
    double relErr = -1, relErrRtn = -1, seconds = 0;
    int64_t tokens = -1;     // MoE expert: routed calibration tokens (-1: not an expert)
    bool fallback = false;   // MoE expert: quantized on the averaged expert Hessian
};

Status saveLayerRecord(const std::string& path, const LayerRecord& rec);
Result<LayerRecord> loadLayerRecord(const std::string& path);

}  // namespace qz::gptq

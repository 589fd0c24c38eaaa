// GPTQ export of a Hugging Face model folder (llama / mistral / qwen2 / gpt2) to an AutoGPTQ "gptq" (v1)
// checkpoint that transformers (optimum + auto-gptq / gptqmodel) and GPTQModel load (README.md D).
//
// Calibration (gptq/gptq_calib.h): seeded random windows of a text file. One engine (infer/engine.h) is
// loaded; the layers of the block being calibrated are swapped into it as they are quantized
// (Engine::setWeight, dequantized values as a loader computes them, fp16 biases) and dropped again
// (Engine::resetWeight) once the states have been carried past that block, which is never run again: the
// engine holds one block's F32 copies, whatever the depth. The windows are embedded once and their hidden states are carried
// from decoder block to decoder block (gptq/gptq_calib.h CarriedStates), as AutoGPTQ does. For every
// layer group of block b (gptq/gptq_layers.h) the engine runs block b on each window's carried states
// only as far as that group's input (Engine::forwardLayer with a stop stage), its observer accumulates
// the group's Hessian (the layers of a group share their input), and the group's layers are quantized
// (gptq/gptq_quant.h). Once the block is quantized it runs completely on the states, which become block
// b+1's input. So the calibration is true-sequential as AutoGPTQ's: every layer sees the outputs of all
// layers quantized before it, in AutoGPTQ's group order [k,v,q], [o], [up,gate], [down] (gpt2:
// [c_attn], [c_proj], [c_fc], [c_proj]); with trueSequential = false one pass per block calibrates all
// of its layers at once (AutoGPTQ's true_sequential=False). Cost: (passes + 1) block evaluations per
// block (at most 4 partial + 1 complete), linear in depth. With F32 states (the default) the Hessians
// equal those of re-running the model from the tokens for every pass.
// The RTN baseline (same bits, group size, grid and packing) can be computed alongside GPTQ (its relative
// output error per layer on the same Hessians) or exported instead (Method::Rtn: no calibration at all,
// no output errors).
//
// Output (written into a hidden temporary folder beside the destination, ".<name>.gptq-partial",
// renamed onto the destination only when complete; the destination must not exist or be empty):
//   model.safetensors (or model-0000k-of-0000N.safetensors + model.safetensors.index.json when larger
//   than maxShardBytes): per quantized layer <prefix>.qweight (I32 [in·bits/32, out]), .qzeros (I32
//   [G, out·bits/32], zero − 1), .scales (F16 [G, out]), .g_idx (I32 [in]), .bias (F16) if any; every
//   other tensor unchanged in its input dtype. Metadata {"format":"pt", "gptq_bits", ...}.
//   quantize_config.json (AutoGPTQ's dict), config.json with "quantization_config" (the same dict),
//   and the tokenizer / generation files of the input folder copied as they are.
// Resume: the temporary folder holds "gptq-state.json" (a fingerprint of the model, the calibration text
// and every parameter that changes the result) and one "<layer>.qzl" file per finished layer
// (gptq/gptq_layers.h). A new run with the same destination and a matching fingerprint loads the
// finished layers and continues from the first missing one: the carried states are rebuilt by running
// the blocks before it once with their quantized layers, and its group's Hessians are recomputed with
// the same quantized predecessors, so the result equals an uninterrupted run; a mismatching
// fingerprint discards the state. Cancel or failure leaves that state (and never the destination).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "gptq/gptq_calib.h"
#include "gptq/gptq_layers.h"
#include "gptq/gptq_quant.h"
#include "infer/engine.h"
#include "model/model.h"

namespace qz::gptq {

enum class Method { Gptq, Rtn };

struct ExportParams {
    QuantConfig quant;               // bits, group size, sym, desc_act, static groups, damp, threads
    bool trueSequential = true;
    Method method = Method::Gptq;    // what is written
    bool rtnBaseline = false;        // with Gptq: also compute the RTN baseline (errors, overrides)
    std::string calibPath;           // text file (needed for Gptq and for rtnBaseline errors)
    CalibParams calib;
    std::string outputDir;
    bool resume = true;              // reuse a matching partial run (false: start afresh)
    uint64_t maxShardBytes = 5'000'000'000;
    bool keepOverrides = false;      // return the dequantized weights (for an evaluation)
    bool writeOutput = true;         // false: quantize and report only (nothing written, no resume state)
    StateType stateType = StateType::F32; // storage of the carried hidden states (F32: exact)
    uint64_t maxStateMemory = 0; // carried states above this many bytes go to a temporary file (0: no limit)
    // Mixture of experts: an expert's layer with fewer routed calibration tokens than this is quantized on
    // the layer's averaged expert Hessian (README.md D.6); -1: 4 x the layer's input columns. An expert
    // no token reached falls back whatever the setting.
    int64_t expertMinTokens = -1;
    // The Hessians observed in one calibration pass take at most this many bytes (0: no limit): a layer
    // group's inputs (a mixture of experts: its experts) are observed in chunks that fit, one pass over the
    // windows each, at least one input per chunk. The written tensors are the same for any budget.
    uint64_t maxHessianMemory = 0;
};

struct LayerReport {
    std::string name;                // weight tensor name
    int block = 0, group = 0;
    int out = 0, in = 0;
    double loss = 0;                 // AutoGPTQ's Σ (w−q)²/d²/2 (GPTQ), 0 for RTN
    double relErr = -1;              // tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of the exported method (-1: no Hessian)
    double relErrRtn = -1;           // the same for the RTN baseline (if computed)
    double seconds = 0;
    bool resumed = false;
    int expert = -1;                 // MoE: the expert of this layer, else -1
    int64_t tokens = -1;             // MoE expert: calibration tokens routed to it (-1: not an expert / RTN)
    bool fallback = false;           // MoE expert: quantized on the averaged expert Hessian (too few tokens)
};
using LayerReportFn = std::function<void(const LayerReport&)>;

struct ExportResult {
    std::string outputDir;
    std::vector<LayerReport> layers;
    std::vector<std::string> files;  // written, relative to outputDir
    uint64_t tensorBytes = 0;
    int resumedLayers = 0;
    int calibrationPasses = 0;  // Hessian passes (one block, up to a group's input) over the calibration set
    int carryPasses = 0;        // complete block evaluations over the calibration set (carrying the states)
    uint64_t stateBytes = 0;    // the carried hidden states: windows × seqLen × hidden × bytes per value
    bool statesSpilled = false; // they were kept in a temporary file (over maxStateMemory)
    int expertsFallback = 0;    // MoE: experts (block, index) with at least one layer below the token threshold
    int expertLayersFallback = 0; // MoE: expert layers quantized on the averaged expert Hessian
    int hessianChunks = 0;        // the most chunks a group's Hessians were observed in (0: all in one pass)
    uint64_t peakHessianBytes = 0; // the largest chunk's Hessians (in × in × 4 bytes per input)
    double seconds = 0;
    // Where the time went (wall and process CPU seconds, all threads): the calibration forward (embedding,
    // the Hessian passes with their observers, the carry passes: proportional to the calibration tokens)
    // and the quantization (factors, GPTQ, errors, layer records: independent of the tokens).
    double calibSeconds = 0, calibCpuSeconds = 0;
    double quantSeconds = 0, quantCpuSeconds = 0;
    // With keepOverrides: dequantized weights (in each tensor's own layout, Conv1D [in, out]) and fp16
    // biases of the exported method, and of the RTN baseline when computed.
    WeightOverrides overrides, rtnOverrides;
};

Result<ExportResult> exportGptq(const Model& model, const ExportParams& params, ProgressFn progress = {},
                                LayerReportFn onLayer = {});

// The round-to-nearest weights of decoder block `block` (gptq/gptq_layers.h planLayers) as a loader computes
// them (same grid and group size as the export's RTN), in each tensor's own layout, with fp16 biases: what
// an RTN checkpoint of the model holds for that block, made from the original weights one block at a time
// (for an evaluation that holds one block, calib/layered.h perplexityLayered).
Result<WeightOverrides> rtnBlockWeights(const Model& model, const LayerPlan& plan, int block, const QuantConfig& quant);

// The quantize_config.json dict (AutoGPTQ's to_dict), as JSON text.
std::string quantizeConfigJson(const ExportParams& params);

}  // namespace qz::gptq

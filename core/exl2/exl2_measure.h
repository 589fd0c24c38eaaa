// EXL2's module view of a llama-family model and its measurement pass (README.md E.6; exllamav2 v0.3.2
// conversion/measure.py).
//
// Modules: every decoder layer is two modules, as exllamav2 splits it, both including the residual:
//   <layer>.self_attn: y = x + Wo·Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n),  n = RMSNorm(x)·input_layernorm
//   <layer>.mlp:       y = x + Wdown·(SiLU(Wgate·n) ⊙ Wup·n),         n = RMSNorm(x)·post_attention_layernorm
// ModuleRunner evaluates one module on the hidden states of a calibration row (each row is one
// sequence, causal attention inside the row, positions 0..len−1) with any weights for its linears. It is
// our own F32 forward pass with the engine's maths (infer/engine.h: RMSNorm summed in double, rotate-half
// RoPE incl. linear / llama3 scaling, grouped-query attention, q/k/v biases when present) but with the
// F32 attention of EngineOptions::kvF16 = false; test_exl2_model checks it against the engine's logits.
// exllamav2 runs the same modules in fp16 on the GPU.
//
// Why our own module forward rather than the engine with setWeight: the measurement needs each module's
// output including the residual on the *reference* hidden states, for ~18 options per module. The engine
// evaluates whole blocks from tokens, so every option would cost a pass through all blocks up to the
// module (quadratic in the depth) and the residual stream itself is not observable. With a module
// forward the hidden states are kept between modules, as exllamav2 keeps them, and the cost is linear.
//
// Measurement, per module, on the reference hidden states x (the unquantized model's):
//   1. the Hessians H = Σ xᵀx / rows of the module's two distinct linear inputs (attention: the normed
//      input shared by q/k/v, and o's input; MLP: the normed input shared by gate/up, and down's input),
//      from a pass over the rows that stops at the last linear's input;
//   2. every distinct QParams of every linear slot of the candidate table (exl2/exl2_qparams.h) is
//      quantized (exl2/exl2_quant.h quantizeLinear) and dequantized as the loader would (kept as fp16);
//   3. row by row: the reference output y_ref of the row, then every option of the table (a combination
//      of one QParams per linear) on the same row, accumulating
//      accuracy = max(1e-6, 1 − mean over rows of ‖y_test − y_ref‖_F / ‖y_ref‖_F),
//      total_bits = Σ QParams::totalBits(in, out, bias) over the module's linears;
//   4. y_ref replaces the row's x in the state store: the next module's input is the reference output,
//      as in exllamav2.
// So the calibration states are held once (calib/states.h: F32 by default; F16 / BF16 halve them; beyond
// a memory budget they live in a temporary file, one row in memory at a time), plus one row's y_ref and
// y_test: the measurement's memory is one module's weights and settings, its Hessians and the states.
// lm_head is not measured.
//
// Resume: with a state folder, each finished module is written there as "measure.<key>.json" (its options,
// written under a temporary name and renamed). A rerun loads the finished modules and recomputes only
// their reference forward (no quantization, no options) to rebuild the hidden states of the first
// unfinished module, so an interrupted measurement continues where it stopped and gives the same result.
//
// measurement.json (exllamav2's format, E.1): {"measurement": {"model.layers.N.self_attn": [option, ...],
// "model.layers.N.mlp": [...], ...}, "last_module_idx": 2·nLayer + 2}; option = {"accuracy", "total_bits",
// "q_proj": QP, "k_proj": QP, "v_proj": QP, "o_proj": QP} (mlp: gate_proj, up_proj, down_proj). Reading
// one back is hostile input: every key, count, value and QParams is checked against the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "exl2/exl2_export.h"
#include "calib/hessian.h"
#include "calib/states.h"
#include "infer/hparams.h"
#include "model/model.h"

namespace qz::exl2 {

struct LinearRef {
    std::string prefix;     // e.g. model.layers.0.self_attn.q_proj
    std::string slot;       // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
    std::string weightName; // prefix + ".weight"
    std::string biasName;   // prefix + ".bias" when present, else empty
    int out = 0, in = 0;
    int64_t numel() const { return static_cast<int64_t>(out) * in; }
};

struct ModuleRef {
    std::string key; // model.layers.N.self_attn | model.layers.N.mlp
    int layer = 0;
    bool attn = true;
    std::string normName;           // input_layernorm / post_attention_layernorm weight
    std::vector<LinearRef> linears; // attn: q, k, v, o; mlp: gate, up, down (the table's slot order)
    int64_t numel() const;
};

struct ModelPlan {
    InferHParams hp;
    std::vector<ModuleRef> modules; // 2 per layer, in order
    std::string embedName;          // model.embed_tokens.weight
    std::string finalNormName;      // model.norm.weight
    LinearRef head;                 // lm_head (out = 0 when the head is tied to the embedding)
    int64_t decoderNumel() const;   // Σ numel of every decoder linear (the optimizer's budget base)
};

// llama / mistral / qwen2 HF folders only (exllamav2's dense llama family); checks every linear's shape
// (in multiple of 32, as EXL2's groups need) and the norms.
Result<ModelPlan> planModel(const Model& model);

// Hidden states of the calibration rows: rows × len tokens × dim, token-major.
struct States {
    int rows = 0, len = 0, dim = 0;
    std::vector<float> data;
    float* row(int r) { return data.data() + static_cast<size_t>(r) * len * dim; }
    const float* row(int r) const { return data.data() + static_cast<size_t>(r) * len * dim; }
};

// The weights a module is evaluated with: per linear W [out][in] (and bias [out] or empty), plus the norm.
struct ModuleWeights {
    std::vector<float> norm;
    std::vector<std::vector<float>> w, b; // in the ModuleRef's linear order
};

// Called during forward() with a linear input, per calibration row: which = 0 for the input shared by
// q/k/v (gate/up), 1 for o's (down's) input; x row-major [nTok][nIn].
using CaptureFn = std::function<void(int which, const float* x, int64_t nTok, int64_t nIn)>;

class ModuleRunner {
  public:
    ModuleRunner(const ModelPlan& plan, int threads);
    // The token embeddings of the windows (rows of equal length).
    Result<States> embed(const Model& model, const std::vector<std::vector<int32_t>>& windows) const;
    // The token embeddings of the windows into a store initialised with windows × length × hidden.
    Status embedInto(const Model& model, const std::vector<std::vector<int32_t>>& windows,
                     calib::StateStore& states) const;
    // y = module(x) for every row. out may be null (captures only). Fails on a non-finite output.
    Status forward(const ModuleRef& m, const ModuleWeights& w, const States& x, States* out,
                   const CaptureFn& capture = {}) const;
    // The same for one row of len tokens (x, y: [len][dim], distinct). y may be null: captures only, and
    // the module stops after its last linear's input.
    Status forwardRow(const ModuleRef& m, const ModuleWeights& w, const float* x, int len, float* y,
                      const CaptureFn& capture = {}) const;
    // RMSNorm(x)·g for every token of every row (the head's input), row-major [rows·len][dim].
    std::vector<float> finalNorm(const States& x, const std::vector<float>& g) const;
    // Σ −log p(next token) over the first `rows` rows (token t predicts windows[r][t+1]) through the final
    // norm g and the head W [vocab][dim] (+ bias); *count receives the number of predicted tokens.
    double nextTokenNll(const States& x, int rows, const std::vector<float>& g, const std::vector<float>& W,
                        const std::vector<float>& bias, const std::vector<std::vector<int32_t>>& windows,
                        int64_t* count) const;
    // One row's terms (x [len][dim], token t predicts window[t+1]) added to *nll and *count in token
    // order (so summing rows in order gives nextTokenNll exactly).
    void addNextTokenNll(const float* x, int len, const std::vector<float>& g, const std::vector<float>& W,
                         const std::vector<float>& bias, const std::vector<int32_t>& window, double* nll,
                         int64_t* count) const;
    // RMSNorm(x)·g of one row [len][dim] into out.
    void finalNormRow(const float* x, int len, const std::vector<float>& g, float* out) const;
    int threads() const { return m_threads; }

  private:
    const ModelPlan& m_plan;
    int m_threads;
    std::vector<double> m_invFreq;
};

Result<ModuleWeights> readModuleWeights(const Model& model, const ModuleRef& m);

// EXL2's Hessian Σ xᵀx / rows from calib::HessianAccumulator (which holds 2/rows · Σ xᵀx).
std::vector<float> exl2Hessian(const calib::HessianAccumulator& acc);

// mean over rows of ‖a_r − b_r‖_F / ‖b_r‖_F → 1 − that, floored at 1e-6 (exllamav2's test_error).
double accuracyOf(const States& test, const States& ref);
// One row's ‖a − b‖_F / ‖b‖_F (n values; 1 when b is 0 and a is not, 0 when both are), in double.
double rowRelativeError(const float* a, const float* b, size_t n);

struct MeasureParams {
    std::string stateDir; // resume folder (empty: no resume state)
    int threads = 0;
    // The carried hidden states (calib/states.h): storage type, memory budget (0: no limit), and the
    // folder of the temporary file beyond it (empty: the system's temporary folder).
    calib::StateType stateType = calib::StateType::F32;
    uint64_t maxStateMemory = 0;
    std::string spillDir;
    uint64_t* stateBytes = nullptr; // receives the states' size
    bool* statesSpilled = nullptr;  // receives whether they went to a file
};

// The measurement pass over all modules. onModule (optional) is called as each module is finished
// (resumed = loaded from the state folder).
using ModuleDoneFn = std::function<void(const ModuleMeasurement&, bool resumed, double seconds)>;
Result<std::vector<ModuleMeasurement>> measureModel(const Model& model, const ModelPlan& plan,
                                                    const std::vector<std::vector<int32_t>>& windows,
                                                    const MeasureParams& params, ProgressFn progress = {},
                                                    ModuleDoneFn onModule = {},
                                                    int* resumedModules = nullptr);

// exllamav2's measurement.json text (indent 4).
std::string measurementJson(const std::vector<ModuleMeasurement>& m, int lastModuleIdx);
std::string moduleMeasurementJson(const ModuleMeasurement& m, const ModuleRef& ref);
// Parses and validates a measurement.json against the model's modules (returned in module order).
Result<std::vector<ModuleMeasurement>> parseMeasurementJson(const std::string& text, const ModelPlan& plan,
                                                            const std::string& what);
Result<std::vector<ModuleMeasurement>> readMeasurementJson(const std::string& path, const ModelPlan& plan);

// The candidate table of a module reduced per slot (exl2_qparams.h reduceQParams, exllamav2's
// get_qparams_reduced): distinct QParams per linear and, per option, the index of its QParams in each slot.
struct ReducedOptions {
    std::vector<std::vector<QParams>> slotParams; // [slot][distinct]
    std::vector<std::vector<int>> optionIdx;      // [option][slot]
};
ReducedOptions reducedOptions(bool attn);

} // namespace qz::exl2

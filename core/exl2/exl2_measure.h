// EXL2's module view of a decoder model and its measurement pass (README.md E.6, E.8; exllamav2 v0.3.2
// conversion/measure.py).
//
// Modules: every decoder layer is two modules, as exllamav2 splits it, both including the residual:
//   <layer>.self_attn: y = x + Attn(x) with the architecture's norms (Gemma: its post-attention norm too),
//                      q/k norms, RoPE, sliding window and soft-cap, linears q, k, v, o (phi3's fused
//                      qkv_proj split into q, k, v rows, as exllamav2 loads it)
//   <layer>.mlp:       y = x + FFN(x) (Gemma: GeGLU and its post-feedforward norm), linears gate, up, down
//                      (phi3's gate_up_proj split into gate and up)
//   <layer>.block_sparse_moe (mixtral, qwen3_moe): y = x + MoE(x), every expert's w1 (gate), w3 (up),
//                      w2 (down) under one option of the MLP table; the router stays unquantized.
// ModuleRunner evaluates one module on the hidden states of a calibration row (each row is one
// sequence, causal attention inside the row, positions 0..len−1) with any weights for its linears,
// through the engine's own block code (Engine::forwardLayer on one residual half, F32 attention).
// exllamav2 runs the same modules in fp16 on the GPU.
//
// Measurement, per module, on the reference hidden states x (the unquantized model's):
//   1. the Hessians H = Σ xᵀx / rows of the module's distinct linear inputs (attention: the normed
//      input shared by q/k/v, and o's input; MLP: the normed input shared by gate/up, and down's input;
//      MoE: the normed input shared by every expert's w1/w3, and each expert's w2 input over the tokens
//      routed to it, divided by the rows that reached the expert), from a pass over the rows that stops
//      at the last linear's input;
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
// Holding every setting of every linear that way would cost ~16 GB for a Qwen3-30B-A3B MoE layer (128
// experts × 3 × 768 × 2048 weights, ~13 settings per slot in fp16), so steps 2-3 run option by option
// instead (every module but phi3's fused parts, which keep the row-by-row loop): the reference outputs of
// all rows first (kept in F32 in a second store, spilled like the states), then per option the slots whose
// setting changed are quantized linear by linear (expert by expert; each F32 weight read from the model
// file, one at a time) into one fp16 buffer per linear, which the engine reads as row sources (Fp16Rows),
// and the rows are evaluated. The reference forward and the Hessian pass read the weights from the model
// file (no F32 copy). The same quantizations and the same sums in the same order give the same
// measurement; memory holds the module once in fp16, its Hessians, and the states twice. The tables
// change a slot's setting only to one it has not had before, except once in the attention table (40
// quantizations per expert, as many as distinct settings; attention 58 against 57).
// lm_head is not measured.
//
// Resume: with a state folder, each finished module is written there as "measure.<key>.json" (its options,
// written under a temporary name and renamed). A rerun loads the finished modules and recomputes only
// their reference forward (no quantization, no options) to rebuild the hidden states of the first
// unfinished module, so an interrupted measurement continues where it stopped and gives the same result.
//
// measurement.json (exllamav2's format, E.1): {"measurement": {"model.layers.N.self_attn": [option, ...],
// "model.layers.N.mlp": [...], ...}, "last_module_idx": 2·nLayer + 2}; option = {"accuracy", "total_bits",
// "q_proj": QP, "k_proj": QP, "v_proj": QP, "o_proj": QP} (mlp: gate_proj, up_proj, down_proj; MoE,
// "model.layers.N.block_sparse_moe": w1, w3, w2, total_bits over all experts). Reading
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
#include "infer/engine.h"
#include "infer/hparams.h"
#include "model/model.h"

namespace qz::exl2 {

struct LinearRef {
    std::string prefix;     // the name exllamav2 gives the layer, e.g. model.layers.0.self_attn.q_proj
    std::string slot;       // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (MoE: w1, w3, w2)
    std::string weightName; // prefix + ".weight"
    std::string biasName;   // prefix + ".bias" when present, else empty
    int out = 0, in = 0;
    // The model tensor holding the weight: weightName, or a fused tensor (phi3's qkv_proj / gate_up_proj)
    // of which this layer is rows srcRow0 .. srcRow0 + out (exllamav2 splits them, README.md E.8).
    std::string srcName;
    int srcRow0 = 0;
    int slotIdx = -1; // the option table's slot (-1: the layer's position in ModuleRef::linears)
    int hessian = -1; // which input Hessian (CaptureFn `which`; -1: 1 for the module's last layer, else 0)
    int64_t numel() const { return static_cast<int64_t>(out) * in; }
    const std::string& source() const { return srcName.empty() ? weightName : srcName; }
};

struct ModuleRef {
    std::string key; // model.layers.N.self_attn | model.layers.N.mlp | model.layers.N.block_sparse_moe
    int layer = 0;
    bool attn = true;
    bool moe = false;               // a mixture of experts: every expert's w1/w3/w2 under one option
    std::string normName;           // input_layernorm / post_attention_layernorm (Gemma: pre_feedforward) weight
    std::vector<LinearRef> linears; // attn: q, k, v, o; mlp: gate, up, down; MoE: w1, w3, w2 of expert 0, 1, ...
    int64_t numel() const;
    int slotOf(size_t i) const { return linears[i].slotIdx >= 0 ? linears[i].slotIdx : static_cast<int>(i); }
    int hessianOf(size_t i) const {
        return linears[i].hessian >= 0 ? linears[i].hessian : (i + 1 == linears.size() ? 1 : 0);
    }
    int hessianCount() const; // distinct input Hessians (2; MoE: 1 + experts)
    // The option table's slot names as measurement.json writes them.
    std::vector<std::string> slotNames() const;
};

struct ModelPlan {
    InferHParams hp;
    std::string exl2Arch;           // exllamav2's architecture string (e.g. Qwen3ForCausalLM)
    std::vector<ModuleRef> modules; // 2 per layer, in order
    std::string embedName;          // model.embed_tokens.weight
    std::string finalNormName;      // model.norm.weight
    LinearRef head;                 // lm_head (out = 0 when the head is tied to the embedding)
    int64_t decoderNumel() const;   // Σ numel of every decoder linear (the optimizer's budget base)
};

// The architectures exllamav2 0.3.2 converts and this exporter writes (README.md E.8), for messages.
inline constexpr const char* kExl2Archs = "llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, gemma2, phi3";

// Hugging Face folders of those architectures only (others are refused, naming why); checks every
// linear's shape (in multiple of 32, as EXL2's groups need) and the norms.
Result<ModelPlan> planModel(const Model& model);

// Hidden states of the calibration rows: rows × len tokens × dim, token-major.
struct States {
    int rows = 0, len = 0, dim = 0;
    std::vector<float> data;
    float* row(int r) { return data.data() + static_cast<size_t>(r) * len * dim; }
    const float* row(int r) const { return data.data() + static_cast<size_t>(r) * len * dim; }
};

// The weights a module is evaluated with: per linear W [out][in] (and bias [out] or empty). Empty (no
// linears): the weights the engine holds (the model file's, or sources given with installSources).
struct ModuleWeights {
    std::vector<std::vector<float>> w, b; // in the ModuleRef's linear order
};

// A linear's weight as fp16 values [out][in] (the loader's dequantized weights are fp16, README.md E.9),
// decoded to F32 rows on demand: the engine multiplies with exactly the values an F32 copy would hold,
// at 2 bytes per weight and without a copy. The buffer is shared: its owner may rewrite it between
// evaluations (another setting of the same linear).
class Fp16Rows : public WeightRowSource {
  public:
    Fp16Rows(std::shared_ptr<const std::vector<uint16_t>> values, int64_t rows, int64_t cols)
        : m_v(std::move(values)), m_rows(rows), m_cols(cols) {}
    int64_t rows() const override { return m_rows; }
    int64_t cols() const override { return m_cols; }
    void decodeRows(int64_t r0, int64_t r1, float* dst) const override;
    uint64_t residentBytes() const override { return m_v->size() * sizeof(uint16_t); }

  private:
    std::shared_ptr<const std::vector<uint16_t>> m_v;
    int64_t m_rows, m_cols;
};

// Called during forward() with a linear input, per calibration row: which = ModuleRef::hessianOf (0: the
// input shared by q/k/v, gate/up or every expert's w1/w3; 1: o's or down's input; MoE: 1 + e for expert
// e's w2, with only the tokens routed to it); x row-major [nTok][nIn].
using CaptureFn = std::function<void(int which, const float* x, int64_t nTok, int64_t nIn)>;

// Runs the modules through the engine (infer/engine.h Engine::forwardLayer on one residual half of a
// block), with HF semantics in F32 (F32 activations, F32 attention, float GELU): every architecture the
// engine evaluates is measured with its own block code. The module's linears are installed with
// setWeight for each evaluation and put back (release) when the module is done, so only one module's
// weights are held.
class ModuleRunner {
  public:
    static Result<std::unique_ptr<ModuleRunner>> create(const Model& model, const ModelPlan& plan, int threads,
                                                        int maxLen);
    ~ModuleRunner();
    // The token embeddings of the windows (rows of equal length; Gemma's scaling included).
    Result<States> embed(const std::vector<std::vector<int32_t>>& windows) const;
    // The token embeddings of the windows into a store initialised with windows × length × hidden.
    Status embedInto(const std::vector<std::vector<int32_t>>& windows, calib::StateStore& states) const;
    // y = module(x) for every row. out may be null (captures only). Fails on a non-finite output.
    Status forward(const ModuleRef& m, const ModuleWeights& w, const States& x, States* out,
                   const CaptureFn& capture = {});
    // The same for one row of len tokens (x, y: [len][dim], distinct). y may be null: captures only, and
    // the module stops after its last linear's input. Empty w: the weights the engine holds (nothing is
    // installed; after release, the model file's, widened per panel of rows: the same values as w read
    // with readModuleWeights, without an F32 copy of the module).
    Status forwardRow(const ModuleRef& m, const ModuleWeights& w, const float* x, int len, float* y,
                      const CaptureFn& capture = {});
    // The module's linears as row sources (one per linear, in the ModuleRef's order; no parts of fused
    // tensors) and, where given (non-empty), their biases' values (else the engine's stay): evaluations
    // with empty ModuleWeights then use them, until release.
    Status installSources(const ModuleRef& m, const std::vector<std::shared_ptr<const WeightRowSource>>& sources,
                          const std::vector<std::vector<float>>& biases = {});
    // Whether every linear of the module is an engine weight of its own (not part of a fused tensor), so
    // that it can be given as a row source.
    static bool sourceable(const ModuleRef& m);
    // The module's tensors back to the model file's (frees their copies and sources).
    void release(const ModuleRef& m);
    // The head's weights: W [vocab][dim] (the dequantized head), or null for the model's own.
    Status setHead(const std::vector<float>* W);
    // The head's input (final norm of x [len][dim]) into out [len][dim].
    Status headInputRow(const float* x, int len, float* out) const;
    // One row's Σ −log p(next token) through the final norm and the current head (token t predicts
    // window[t+1]), added to *nll and *count in token order.
    Status addNextTokenNll(const float* x, int len, const std::vector<int32_t>& window, double* nll,
                           int64_t* count) const;
    int threads() const { return m_threads; }

  private:
    ModuleRunner(const ModelPlan& plan, int threads) : m_plan(plan), m_threads(threads) {}
    Status install(const ModuleRef& m, const ModuleWeights& w);
    const ModelPlan& m_plan;
    int m_threads;
    std::unique_ptr<Engine> m_engine;
};

Result<ModuleWeights> readModuleWeights(const Model& model, const ModuleRef& m);

// One pass over the rows of x (not changed) with the module's weights w, up to its last linear's input:
// the module's input Hessians (ModuleRef::hessianOf), each counting the rows that fed it.
Result<std::vector<calib::HessianAccumulator>> accumulateHessians(ModuleRunner& runner, const ModuleRef& m,
                                                                  const ModuleWeights& w, calib::StateStore& x,
                                                                  int rows, int len,
                                                                  const std::function<bool()>& cancel);

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
ReducedOptions reducedOptions(bool attn); // MoE modules use the MLP table

} // namespace qz::exl2

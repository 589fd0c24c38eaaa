// The numbers behind the teaching views (ui/teaching_view.h): pure functions that run the real quantizers
// of the engine on a small piece of a real tensor and return everything a plot needs. No Qt, no state.
//
//   numberLine       absmax against zero-point on one row slice at b bits (quant/simple_quant.h, the
//                    first notebook's formulas, core/quant/README.md §1): scale, zero point, the value
//                    range the codes cover, the code every value lands on and the value it comes back as.
//   openSuperBlock   one k-quant super-block of 256 weights quantized by ggml's reference quantizer
//                    (ggml/kquants.h), its bytes decoded field by field (core/ggml/README.md B.2, B.3):
//                    the super-block scales d / dmin, the 8 or 16 sub-block scale and min codes, the code
//                    of every weight, and the reconstruction, both from the fields and from the engine's
//                    dequantizer (they are equal: the test checks it).
//   traceGptq        GPTQ's column loop (gptq/gptq_quant.h, core/gptq/README.md D.5) replayed one column at
//                    a time on a small slice, with the working matrix after every step, so a view can show
//                    the error of column j spread to the later columns through H⁻¹; RTN on the same grid
//                    beside it. Stepped to the end it equals quantizeLayerGptq with one block (the test
//                    checks codes and scales).
//   exl2Allocation   EXL2's candidates per module (measurement, core/exl2/README.md E.1, E.6) as bits per
//                    weight against error, the optimizer's choice and the options no other option beats.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/progress.h"
#include "common/result.h"
#include "exl2/exl2_export.h"
#include "model/model.h"

namespace qz::teach {

// A window of a tensor as F32: rows [row0, row0 + rows) × columns [col0, col0 + cols) of the stored
// [rows × cols] view (the last dimension is the row). Reads only those rows (block types: whole rows,
// decoded with the dequantizer). Fails, naming the tensor, when the window is outside the tensor.
Result<std::vector<float>> readTensorWindow(const Model& model, const TensorInfo& t, int64_t row0,
                                            int64_t rows, int64_t col0, int64_t cols);

// ---- 1. absmax vs zero-point on a number line ----

struct SchemeLine {
    std::string name; // "absmax" | "zero-point"
    float scale = 1;  // codes = round(scale·x [+ zero])
    int32_t zero = 0; // the zero point (0 for absmax)
    int32_t codeMin = 0,
            codeMax = 0; // the code range: absmax ±(2^(b−1) − 1), zero-point −2^(b−1) .. 2^(b−1) − 1
    float rangeLo = 0, rangeHi = 0; // the values of codeMin and codeMax: (code − zero) / scale
    std::vector<int32_t> codes;     // per value
    std::vector<float> dequantized; // (code − zero) / scale
    int clipped = 0;                // values whose rounded code fell outside the code range
    double mse = 0;
    double maxAbsError = 0;
};

struct NumberLine {
    int bits = 8;
    std::vector<float> values;
    SchemeLine absmax, zeroPoint;
};

// n ≥ 1 values, bits 2..8.
Result<NumberLine> numberLine(const float* x, int64_t n, int bits);

// ---- 2. a k-quant super-block opened up ----

struct SuperBlock {
    DType type = DType::Q4_K;
    int subBlocks = 8, subSize = 32; // 8 × 32 (Q4_K, Q5_K) or 16 × 16 (Q2_K, Q3_K, Q6_K)
    int scaleBits = 6, codeBits = 4; // bits of a sub-block scale code / of a weight's code
    bool hasMins = true; // Q2_K, Q4_K, Q5_K: y = d·sc·q − dmin·m; Q3_K, Q6_K: y = d·sc·(q − offset)
    int codeOffset = 0;  // 4 for Q3_K, 32 for Q6_K, else 0
    float d = 0, dmin = 0;         // the super-block scales (stored as fp16)
    std::vector<int> scaleCodes;   // per sub-block, the integer multiplier of d (Q3_K: −32..31, Q6_K: int8)
    std::vector<int> minCodes;     // per sub-block, the integer multiplier of dmin (empty without mins)
    std::vector<float> subScale;   // d·scaleCode
    std::vector<float> subMin;     // dmin·minCode (0 without mins)
    std::vector<int> codes;        // 256 stored codes, 0 .. 2^codeBits − 1
    std::vector<float> weights;    // the 256 inputs
    std::vector<float> fromFields; // subScale·(code − codeOffset) − subMin, computed here from the fields
    std::vector<float> dequantized; // the engine's dequantizer on the block's bytes
    std::vector<uint8_t> bytes;     // the block as the file holds it
    double mse = 0, maxAbsError = 0;
};

// Q2_K, Q3_K, Q4_K, Q5_K or Q6_K on 256 values (llama-quantize's algorithm without an importance matrix).
Result<SuperBlock> openSuperBlock(DType type, const float* x256);
// The decoding alone, on a block's bytes (exposed for tests).
Result<SuperBlock> decodeSuperBlock(DType type, const uint8_t* block);

// ---- 3. GPTQ's error feedback, column by column ----

// The Hessian 2/n·Σ x·xᵀ (gptq/gptq_hessian.h's normalisation) of n synthetic activations: a fixed-seed
// AR(1) process along the input features (x_k = 0.8·x_{k−1} + g_k, g Gaussian), every fifth feature 3×
// louder, so that neighbouring features correlate and some matter more — what makes GPTQ differ from RTN.
std::vector<float> syntheticHessian(int cols, int samples, uint64_t seed);

struct GptqTrace {
    int rows = 0, cols = 0, bits = 4;
    std::vector<float> original; // [rows][cols]
    std::vector<float> hinv;     // [cols][cols] upper Cholesky factor of the damped H⁻¹ (what GPTQ uses)
    double damp = 0;
    std::vector<float> scale, zero; // per row (one group per row, symmetric grid from the original row)
    // working[t] = the weights after columns 0..t−1 were quantized and their errors spread: [rows][cols].
    // working[0] = original; column j is quantized from working[j].
    std::vector<std::vector<float>> working;
    std::vector<uint8_t> codes;        // [rows][cols]
    std::vector<float> dequantized;    // scale·(code − zero), [rows][cols]
    std::vector<float> colError;       // [rows][cols]: w − q of column j at its step (w from working[j])
    std::vector<float> rtnDequantized; // RTN on the same grid, [rows][cols]
    double gptqOutputError = 0, rtnOutputError = 0; // tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) on the same H
};

// The Hessian 2/n·Σ x·xᵀ of a linear layer's calibration inputs, restricted to its input features
// col0 .. col0 + cols − 1 (n = tokens seen): the engine (infer/engine.h: llama, mistral, qwen2, gpt2) runs
// `samples` windows of `seqLen` tokens of the text (gptq/gptq_calib.h, seed 0) through the decoder blocks up
// to the layer's, and its linear observer hands over the layer's input x. The engine holds the model's
// weights as F32 while it runs (as the GPTQ export's calibration does). Fails, naming the tensor, for a
// tensor that is not a decoder block's linear weight or whose stored rows are not its output features
// (GPT-2's Conv1D weights are stored [in × out]). Cancellable through progress.
Result<std::vector<float>> calibrationHessian(const Model& model, const std::string& weightName, int64_t col0,
                                              int cols, const std::string& textPath, int samples, int seqLen,
                                              ProgressFn progress = {});

// rows × cols weights (row-major) and the [cols × cols] Hessian; bits 2, 3, 4 or 8; symmetric grid, one
// group per row, no act-order. Equal to quantizeLayerGptq with blockSize ≥ cols and groupSize −1.
Result<GptqTrace> traceGptq(const float* W, int rows, int cols, const std::vector<float>& H, int bits,
                            double dampPercent = 0.01);

// ---- 4. EXL2's bit allocation ----

struct Exl2Candidate {
    double bpw = 0;   // total_bits / numel of the module's linears
    double error = 0; // 1 − accuracy
    int64_t totalBits = 0;
    bool pareto = false; // no other option has fewer or equal bits and a lower error
    std::string setting; // the linears' settings, "q_proj 4b_32g…, …"
};

struct Exl2Module {
    std::string key; // model.layers.N.self_attn | .mlp
    int64_t numel = 0;
    std::vector<Exl2Candidate> options;
    int chosen = -1; // the optimizer's choice (index into options)
};

// measurement: per module its options; strategy: the chosen option per module; numel: the module's
// weight count (exl2::ModuleRef::numel). Sizes must agree, indices be in range.
Result<std::vector<Exl2Module>> exl2Allocation(const std::vector<exl2::ModuleMeasurement>& measurement,
                                               const std::vector<int>& strategy,
                                               const std::vector<int64_t>& numel);

// The choice for a measurement read back from measurement.json: exactly the EXL2 export's optimization step
// (exl2/exl2_export.h step 2: budget = int(Σ numel · targetBpw), exl2::optimizeStrategy with the seed and the
// proposals per temperature). Returns an ExportResult with measurement, strategy, targetBpw, achievedBpw and
// errorNorm filled (nothing else). numel: per module, as for exl2Allocation. Cancellable through progress.
Result<exl2::ExportResult> optimizeMeasurement(std::vector<exl2::ModuleMeasurement> measurement,
                                               const std::vector<int64_t>& numel, double targetBpw,
                                               uint64_t seed, int annealIterations = 1000,
                                               ProgressFn progress = {});

} // namespace qz::teach

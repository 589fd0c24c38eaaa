// EXL2 export of a Hugging Face folder of an architecture exllamav2 0.3.2 converts (llama, mistral, qwen2,
// qwen3, qwen3_moe, mixtral, gemma2, phi3; README.md E.8) to a directory exllamav2 loads (README.md E.1,
// E.6, E.7).
//
//  1. Measurement (skipped when params.measurementPath names a finished measurement.json): per decoder
//     layer two modules, self_attn (q, k, v, o) and mlp (gate, up, down; MoE: block_sparse_moe, every
//     expert's w1, w3, w2; phi3's fused tensors split as exllamav2 splits them). Each linear is quantized under
//     every distinct QParams of the candidate tables (exl2/exl2_qparams.h) on the reference hidden states,
//     each option's module output is compared with the reference output, accuracy = 1 − mean relative
//     Frobenius error (floored at 1e-6). Written as exllamav2's measurement.json (+ "last_module_idx");
//     an interrupted measurement resumes from the state in the temporary folder. Modules are evaluated by
//     the engine's block code one residual half at a time (exl2/exl2_measure.h), in F32.
//  2. Optimization: one option per module so that Σ total_bits ≤ int(numel(decoder linears) · targetBpw)
//     with the least Σ error^norm (exllamav2's annealing schedule, but seeded: deterministic), then the
//     leftover budget spent greedily.
//  3. Quantization: each module with its option on the outputs of the already quantized modules (the
//     quantized model's own hidden states), lm_head last with the head-bits option.
//  4. Output written into a hidden temporary folder beside the destination and renamed when complete:
//     output.safetensors (output-0000k-of-0000N.safetensors when larger than maxShardBytes; no index),
//     per quantized linear <module>.q_weight / q_scale / q_scale_max / q_groups / q_invperm (+ bias F16);
//     every other tensor as F16; config.json with quantization_config {"quant_method":"exl2", ...};
//     the tokenizer / generation files copied; measurement.json beside them. No work files remain.
//     The temporary folder is ".<name>.exl2-partial" beside the destination (which must not exist or be
//     empty); on cancel or failure the destination is not created, and the temporary folder is kept only
//     while it holds measurement state (exl2/exl2_measure.h) for a resumed run, with "exl2-state.json"
//     (a fingerprint of the model, the calibration text and the measurement rows: a mismatch discards it).
//
// Memory: the hidden states of all calibration rows are held once (calib/states.h; rows · length · hidden
// values, F32 by default, F16 / BF16 halve them; beyond maxStateMemory they go to an unlinked temporary
// file in the temporary folder and only a row is in memory at a time): each module's output replaces its
// input row by row, in the measurement (the reference output) as in the quantization (the quantized
// model's output), plus the original model's states of the rows the calibration perplexity uses.
// exllamav2 keeps the states too, on disk between runs. Besides them: one module's weights (and in the
// measurement its quantized settings as fp16), its Hessians, and one row's work. Each quantized linear's packed tensors are spilled to
// out_tensor/ in the temporary folder as soon as it is quantized and streamed from there into the output,
// so they never accumulate in memory; that folder is removed on success, failure and cancel.
//
// bpw: achievedBpw = Σ total_bits of the chosen options / Σ numel of the decoder linears (q, k, v, o, gate,
// up, down of every layer), which is exllamav2's budget (optimize.py); the head is reported separately.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "exl2/exl2_quant.h"
#include "calib/states.h"
#include "calib/windows.h"
#include "infer/engine.h"
#include "model/model.h"

namespace qz::exl2 {

struct ExportParams {
    double targetBpw = 5.0;                      // notebook default
    int headBits = 6;                            // notebook default
    std::string calibPath;                       // calibration text
    calib::CalibParams measureCalib{16, 2048, 0}; // rows × length for the measurement (exllamav2: 16 × 2048)
    calib::CalibParams quantCalib{100, 2048, 0}; // rows × length for the quantization (exllamav2: 100 × 2048)
    std::string measurementPath; // reuse this measurement.json (skip measuring) if set and valid
    std::string outputDir;
    bool resume = true;
    uint64_t seed = 0; // the optimizer's seed
    uint64_t maxShardBytes = 8192ull * 1024 * 1024;
    int threads = 0;
    bool keepOverrides = false;  // return the dequantized weights (for an evaluation)
    bool writeOutput = true;     // false: measure / optimize / quantize and report only (no files, no resume)
    int annealIterations = 1000; // proposals per temperature of each annealing run (exllamav2: 1000)
    calib::StateType stateType = calib::StateType::F32; // storage of the carried hidden states (F32: exact)
    uint64_t maxStateMemory = 0; // states above this many bytes go to a temporary file (0: no limit)
};

// One linear layer's outcome, reported as it finishes (for a per-layer chart).
struct LayerReport {
    std::string name;   // weight tensor name, e.g. model.layers.0.self_attn.q_proj.weight
    std::string module; // model.layers.0.self_attn / .mlp / lm_head
    int out = 0, in = 0;
    std::string setting; // QParams::desc()
    double bpw = 0;      // of this layer (total_bits / numel)
    double relErr = -1;  // relative output error of the quantized layer on its calibration input
    double seconds = 0;
};
using LayerReportFn = std::function<void(const LayerReport&)>;

struct ModuleMeasurement { // one module's options, as measurement.json holds them
    std::string key;       // model.layers.N.self_attn | model.layers.N.mlp
    struct Option {
        double accuracy = 0;
        int64_t totalBits = 0;
        std::vector<QParams> qp;
    };
    std::vector<Option> options;
};

struct ExportResult {
    std::string outputDir;
    std::vector<ModuleMeasurement> measurement;
    bool measurementReused = false; // params.measurementPath was read, nothing was measured
    int measuredModules = 0;        // modules measured by this run
    int resumedModules = 0;         // modules taken from an interrupted run's state
    std::vector<LayerReport> layers;
    std::vector<int> strategy;             // chosen option per module (index into measurement[i].options)
    double errorNorm = 0;                  // the optimizer's norm (Σ error^norm was minimized)
    double targetBpw = 0, achievedBpw = 0; // over the decoder linears (the optimizer's budget)
    double headBpw = 0;
    // Calibration perplexity (as exllamav2's converter prints it) on the first min(measure rows, quant rows)
    // quantization rows: the original model, and the quantized one incl. the quantized head. 0 when the
    // head is tied to the embedding (not quantized).
    double calibPplBase = 0, calibPplQuant = 0;
    int calibPplRows = 0;
    uint64_t stateBytes = 0;     // the largest set of carried hidden states (measurement or quantization)
    bool statesSpilled = false;  // some were kept in a temporary file (over maxStateMemory)
    std::vector<std::string> files; // written, relative to outputDir
    uint64_t tensorBytes = 0;
    double seconds = 0, measureSeconds = 0, optimizeSeconds = 0, quantizeSeconds = 0;
    // With keepOverrides: the dequantized weights of every quantized linear ([out][in], what exllamav2's
    // loader reconstructs) and their biases rounded to fp16, by the model's tensor names.
    WeightOverrides overrides;
};

// Phase names for progress: "measure", "optimize", "quantize", "write".
Result<ExportResult> exportExl2(const Model& model, const ExportParams& params, ProgressFn progress = {},
                                LayerReportFn onLayer = {});

} // namespace qz::exl2

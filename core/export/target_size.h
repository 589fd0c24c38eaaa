// The GGUF file that fits a size: per-tensor types chosen to minimise a predicted loss under a byte
// (or bits-per-weight) budget, then written by the GGUF exporter with one --tensor-type per tensor.
//
// 1. Sensitivity (measureSensitivity, the expensive part, done once): for every tensor llama-quantize
//    may quantize and every candidate type whose block fits its rows (IQ1/IQ2/IQ3_XXS only where the
//    importance matrix has an entry, as llama-quantize requires), the predicted loss
//        roleWeight(role) · Σ_j imp_j Σ_i (w_ij − q_ij)²  /  Σ_j imp_j Σ_i w_ij²
//    i.e. the importance-weighted error that ggml's quantizers minimise (imp_j = mean squared input
//    activation of column j, from the imatrix; 1 where the file has no entry) relative to the
//    tensor's importance-weighted energy, scaled per tensor role. Why this proxy and its weights: the
//    single-tensor KL-divergence measurements in core/export/README.md A. The sums are taken over an
//    evenly spaced sample of rows (rows are quantized independently, so the sample is unbiased).
// 2. Choice (chooseTargetPlan, cheap, any number of targets from one table): a multiple-choice knapsack
//    (solveMultipleChoice): Lagrangian greedy over each tensor's lower convex hull of (bytes, loss),
//    then the remaining budget filled by improving single and paired moves. Deterministic.
// 3. Export: targetExportParams turns the plan into GgufExportParams (anchored per-tensor overrides);
//    the file's bytes equal the plan's prediction (header, 32-byte data alignment included).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/progress.h"
#include "common/result.h"
#include "export/gguf_export.h"
#include "model/model.h"

namespace qz {

// "4.5G", "700M", "700MB", "3GiB", "512K", "123456" (bytes). K/M/G/T and KB/MB/GB/TB are powers of
// 1000 (as llama.cpp's gguf-split --split-max-size), KiB/MiB/GiB/TiB powers of 1024. Case-insensitive.
std::optional<uint64_t> parseByteSize(std::string_view text);

// --- the optimiser -------------------------------------------------------------------------------

struct KnapsackOption {
    uint64_t cost = 0;
    double loss = 0;
};

struct KnapsackResult {
    std::vector<size_t> choice; // per item: index into its options
    uint64_t cost = 0;
    double loss = 0;
    double lowerBound = 0; // the LP relaxation's optimum: no choice within the budget has less loss
};

// One option per item, total cost <= budget, least total loss. Error if even the cheapest options do
// not fit, or an item has no option. Ties are broken by item and option index (deterministic).
Result<KnapsackResult> solveMultipleChoice(const std::vector<std::vector<KnapsackOption>>& items,
                                           uint64_t budget);

// --- sensitivity --------------------------------------------------------------------------------

struct TargetCandidate {
    DType type = DType::F16;
    uint64_t bytes = 0;       // the whole tensor in this type
    double loss = 0;          // predicted (see above)
    double weightedError = 0; // Σ_j imp_j Σ_i (w−q)² over the sampled rows, scaled to all rows
};

struct TargetTensor {
    std::string name; // GGUF name
    std::vector<int64_t> ne;
    bool quantizable = false;     // false: kept as the exporter keeps it (norms, biases, ...)
    DType fixedType = DType::F32; // the type of a tensor that is not quantizable
    uint64_t fixedBytes = 0;
    bool hasImatrix = false; // the importance matrix has an entry for it
    std::string
        role; // attn_q, attn_k, attn_v, attn_output, ffn_up, ffn_gate, ffn_down, token_embd, output, other
    double roleWeight = 1;
    double energy = 0;       // Σ_j imp_j Σ_i w² over the sampled rows, scaled to all rows
    double measuredKld = -1; // SensitivityParams::kldText: the KLD with this tensor alone at kldType
    DType kldType = DType::F32;
    std::vector<TargetCandidate> candidates; // in the order of the candidate list, only those that fit
};

struct SensitivityParams {
    std::string imatrixPath;       // optional but recommended (IQ types and the weighting need it)
    std::vector<DType> candidates; // empty: defaultTargetCandidates()
    int64_t sampleRows = 256;      // rows per tensor in the proxy (all when the tensor has fewer)
    int threads = 0;
    bool unitRoleWeights = false; // every role weight 1 (for measuring the proxy itself)
    // Optional, expensive: calibrate each tensor's weight by measurement instead of its role. For every
    // quantizable tensor, the mean KL-divergence of the model's output on this text (kldCtx tokens per
    // chunk, kldChunks chunks) when that tensor alone is quantized to a reference type (Q3_K, or the
    // candidate nearest 3.5 bits) becomes its weight: weight = KLD_ref / (E_ref / S). One model evaluation
    // per tensor; architectures the engine runs only (llama, mistral, qwen2, gpt2).
    std::string kldText;
    int kldCtx = 128;
    int kldChunks = 8;
};

struct SensitivityTable {
    std::vector<TargetTensor> tensors; // in file order
    uint64_t headerAndFixedBytes = 0;  // file bytes that no choice changes (header, padded fixed tensors)
    uint64_t fixedRawBytes = 0;        // unpadded bytes of the fixed tensors
    uint64_t parameters = 0;           // all tensors' elements
    std::string imatrixPath;
};

std::vector<DType> defaultTargetCandidates();
// Role name of a GGUF tensor and the weight of its predicted loss (core/export/README.md A).
std::string tensorRole(const std::string& ggufName);
double roleWeight(const std::string& role, int nLayer);

Result<SensitivityTable> measureSensitivity(const Model& model, const SensitivityParams& params,
                                            const ProgressFn& progress = {});

// --- the plan ------------------------------------------------------------------------------------

struct TargetTensorChoice {
    std::string name;
    DType type = DType::F32;
    uint64_t bytes = 0;
    double loss = 0;     // predicted; 0 for tensors that are not quantizable
    bool chosen = false; // by the optimiser (false: fixed tensor)
};

struct MixPoint {     // a standard llama-quantize mix on the same sensitivity table
    std::string name; // "Q4_K_M"
    uint64_t fileBytes = 0;
    double bitsPerWeight = 0;
    double predictedLoss = 0; // NaN if one of its types is not in the table
};

struct TargetPlan {
    std::vector<TargetTensorChoice> tensors; // file order
    uint64_t fileBytes = 0;                  // exact size of the file the exporter writes
    double bitsPerWeight = 0;                // tensor data bits / parameters (as GgufExportResult)
    double predictedLoss = 0;
    double lowerBound = 0; // no plan within the budget has a lower predicted loss
    uint64_t budget = 0;   // the file size (or, for a bpw target, the tensor data bytes) allowed
    std::string fileType;  // general.file_type written (the nearest standard K mix by size)
};

struct TargetSpec {
    uint64_t fileBytes = 0;   // whole file, or
    double bitsPerWeight = 0; // tensor data bits per parameter (used when fileBytes is 0)
};

Result<TargetPlan> chooseTargetPlan(const SensitivityTable& table, const TargetSpec& target);

// The standard mixes (Q2_K .. Q8_0 and, with an importance matrix, the IQ mixes) on the table: sizes
// from the exporter's dry run, predicted loss from the table.
Result<std::vector<MixPoint>> standardMixPoints(const Model& model, const SensitivityTable& table);

// The exporter parameters that write the plan (outputPath, dryRun, threads taken from `base`).
GgufExportParams targetExportParams(const TargetPlan& plan, const SensitivityTable& table,
                                    const GgufExportParams& base);

// A GGUF regular expression matching exactly this tensor name.
std::string exactNameRegex(const std::string& name);

} // namespace qz

// LLM.int8() (Dettmers et al. 2022, bitsandbytes Linear8bitLt) as a weight format, simulated by fake
// quantization:
//   * Outlier features: input features (columns of W = [out × in]) whose calibration activations
//     reach the threshold in at least one token: max_t |x_t[j]| >= threshold (bitsandbytes tests
//     A.abs() >= threshold; default threshold 6.0). The per-feature maxima come from running a
//     calibration text through our engine (jobs/calibration.h).
//   * Those weight columns stay 16-bit: stored as fp16 (the decoded value is fp16(w)).
//   * Every other value: vector-wise (per output row) absmax INT8: rowmax = max |w| over the row's
//     non-outlier columns (fp32, "SCB"); q = round(w · (127 / rowmax)) (127/rowmax in float, round half
//     to even, as int8_vectorwise_quant); decoded w = q · rowmax · (1/127 as float), the order of
//     int8_vectorwise_dequant. The int8 code of an outlier column is 0. An all-zero row: rowmax 0,
//     codes 0, decoded 0.
//   Differences to bitsandbytes (read in MatMul8bitLt.forward and backends/default/ops.py): it
//   quantizes the weight once, int8_vectorwise_quant(B) *without* a threshold, so its row maxima run
//   over all columns; at each forward pass it finds the outlier columns of the actual activations
//   (elements |A| >= threshold), excludes those elements from the activations' per-token maxima,
//   quantizes the activations to int8 and adds A[:, outliers] (fp16) times the *dequantized int8*
//   weight columns. So bitsandbytes' stored weights are exactly per-row INT8 and its gain is on the
//   activation side. Here (weight-only fake quantization) the outlier set is fixed by calibration and
//   the outlier weight columns keep 16-bit values with the row scale taken over the other columns, as
//   the paper's mixed-precision decomposition writes it (X_f16·W_f16 over the outlier dimensions +
//   the int8 product over the rest). llmInt8QuantizeActivations below simulates the activation side
//   for measurements (tests/bench/bench_llm_int8.cpp).
//   * Bytes: (in − k) · out int8 + out · 4 (fp32 row scales) + k · out · 2 (fp16 outlier columns)
//     + k · 4 (int32 index of each outlier column).
// Layout: model tensors are [out × in] (rows = output features), except Hugging Face GPT-2's Conv1D
// weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj), stored [in × out]: for those the "columns"
// above are the stored rows and the per-output scale runs down the stored columns.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qz {

// True for weights stored [in × out] (HF GPT-2 Conv1D names).
bool weightInputIsRows(const std::string& tensorName);

// Indices j with maxAbs[j] >= threshold (NaN never counts), ascending.
std::vector<int32_t> findOutlierFeatures(std::span<const float> maxAbs, float threshold);

struct LlmInt8Bytes {
    uint64_t int8Bytes = 0, scaleBytes = 0, outlierBytes = 0, indexBytes = 0;
    uint64_t total() const { return int8Bytes + scaleBytes + outlierBytes + indexBytes; }
};
LlmInt8Bytes llmInt8Bytes(int64_t nOut, int64_t nIn, int64_t nOutliers);

// The per-output-feature absmax of the int8 part ("SCB"): rowmax[o] = max |w(o, i)| over the non-outlier
// input features i (0 for a row without any). nOut values (inputIsRows: the stored columns).
std::vector<float> llmInt8RowMax(const float* w, int64_t rows, int64_t cols, bool inputIsRows,
                                 std::span<const int32_t> outlierFeatures);

// Fake-quantizes a weight stored [rows × cols] (inputIsRows: Conv1D [in × out]). outlierFeatures are
// input-feature indices (out-of-range ones are ignored). out may alias w; codes (optional, rows·cols in
// the stored layout) receive the int8 codes (0 for outlier columns).
void llmInt8QuantizeDequantize(const float* w, int64_t rows, int64_t cols, bool inputIsRows,
                               std::span<const int32_t> outlierFeatures, float* out, int8_t* codes = nullptr);

// The activation side of bitsandbytes' LLM.int8() matmul (int8_vectorwise_quant(A, threshold) and
// int8_mixed_scaled_mm), simulated in place on x = [nTokens × nIn] (token-major, one row per token):
// x is first rounded to fp16 (bitsandbytes casts A to fp16); the outlier columns are the input features
// with |x[t][j]| >= threshold for at least one of the given tokens (threshold <= 0: none) and keep their
// fp16 values (bitsandbytes multiplies them in 16 bits); every other value becomes its vector-wise int8
// reconstruction round(x · 127 / rowstat_t) · rowstat_t / 127, where rowstat_t = max |x[t][j]| over the
// token's elements below the threshold (bitsandbytes zeroes the outlier elements before taking the row
// maximum). With threshold <= 0 this is plain vector-wise (per-token) absmax INT8 activations (W8A8).
// Returns the outlier columns, ascending.
std::vector<int32_t> llmInt8QuantizeActivations(float* x, int64_t nTokens, int64_t nIn, float threshold);

}  // namespace qz

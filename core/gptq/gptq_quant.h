// GPTQ for one linear layer, as AutoGPTQ's GPTQ.fasterquant / Quantizer implement it (README.md D.5),
// plus the round-to-nearest (RTN) baseline with the same grid.
//
// W is [rows = out][cols = in] (a GPT-2 Conv1D weight must be transposed first), H the [in × in]
// Hessian 2/n·Σ x·xᵀ of the layer's calibration inputs (gptq/gptq_hessian.h).
//   grid (find_params, per output row over the group's columns): xmin = min(min, 0), xmax = max(max, 0);
//     sym: xmax = max(|xmin|, xmax), xmin = −xmax if xmin < 0; both 0 -> [−1, 1];
//     scale = (xmax − xmin)/maxq; zero = sym ? 2^(bits−1) : round(−xmin/scale)   (round half to even)
//     q = clamp(round(w/scale) + zero, 0, maxq), ŵ = scale·(q − zero)
//   One deliberate difference: asymmetric zero = 0 cannot be stored in the v1 "gptq" checkpoint format
//   (zeros are stored minus one), so when it would be 0 we use zero = 1 and scale = xmax/(maxq − 1)
//   (the grid still covers [0, xmax]). AutoGPTQ instead writes a corrupt qzeros word there.
//   fasterquant: whole-row params from the original W (used when groupSize = −1); dead columns
//   (H_ii = 0) -> H_ii = 1, W[:, i] = 0; static groups (params per group of original columns, before
//   any update); act-order: columns sorted by diag(H) descending; damp = dampPercent·mean(diag H) added
//   to the diagonal; U = upper Cholesky factor of H⁻¹ (computed in double); then blocks of blockSize
//   columns: per column quantize, e = (w − q)/U_cc, update the rest of the block, and after the block
//   the remaining columns with Err·U[block, rest]. Group params are found at each group start from W
//   (which lacks the updates of the current block's earlier columns: AutoGPTQ's quirk, kept).
//   g_idx = position-in-processing-order / groupSize (act-order without static groups; non-monotone),
//   else k / groupSize. Scales / zeros are stored per group in processing order.
// Rows are independent: the work is split into fixed chunks of 64 rows over the threads, so the result
// is bit-identical for any thread count (checked in test_gptq_quant).
// Cholesky failure: damp is raised by 0.0025·mean(diag H) steps (as GPTQModel) up to 1.0, then an error.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/result.h"

namespace qz::gptq {

struct QuantConfig {
    int bits = 4;              // 2, 3, 4, 8
    int groupSize = 128;       // -1 = one group per row
    bool sym = true;
    bool descAct = false;      // act-order
    bool staticGroups = false;
    double dampPercent = 0.01;
    int blockSize = 128;
    int threads = 0;           // 0 = defaultThreadCount()
    int maxq() const { return (1 << bits) - 1; }
};

// Checks bits / group size / damp. in and out: the layer's dims (packing needs in % 32 == 0 and
// out % (32/bits) == 0, out % 32 == 0 for 3 bits).
Status validateConfig(const QuantConfig& c);
Status checkLayerShape(const QuantConfig& c, int64_t out, int64_t in);

struct LayerResult {
    int rows = 0, cols = 0;          // out, in
    int bits = 4, groupSize = 128;   // groupSize as configured (-1 kept)
    int nGroups = 1;
    std::vector<uint8_t> codes;      // [rows][cols], original column order, in [0, maxq]
    std::vector<float> scales;       // [nGroups][rows] (fp32; stored as fp16)
    std::vector<int32_t> zeros;      // [nGroups][rows]
    std::vector<int32_t> gIdx;       // [cols]
    double loss = 0;                 // AutoGPTQ's Σ (w − q)²/U_cc²/2 (0 for RTN)
    double dampUsed = 0;             // damp fraction finally used
};

// Group params for one row slice (exposed for tests).
void findParams(const float* x, int n, int stride, const QuantConfig& c, float& scale, float& zero);
inline float quantizeValue(float x, float scale, float zero, int maxq);

// What GPTQ derives from H alone (dead columns, act-order, the damped inverse's Cholesky factor U), so
// that the layers of a calibration group, which share their inputs and thus H, compute it once. U is kept
// as float in row bands of blockSize rows from the diagonal to the last column (the only part the column
// loop reads): about half of a full [cols × cols] matrix. Building it takes one double [cols × cols]
// matrix (factorised in place) besides H and the bands.
struct GptqFactor {
    int cols = 0;
    bool descAct = false;
    double dampPercent = 0;
    int blockSize = 0;
    double dampUsed = 0;
    std::vector<char> dead;         // H_ii == 0 (W's column is zeroed)
    std::vector<int> perm, invperm; // processing order (act-order) and its inverse
    std::vector<float> bands;       // band i1: column-major count × (cols − i1), U(i1 + r, i1 + j)
    size_t bandOffset(int i1) const;
};
// H row-major [cols][cols] (symmetric), not modified. cancel() is polled when the damp has to be raised.
Result<GptqFactor> prepareGptq(const std::vector<float>& H, int cols, const QuantConfig& c,
                               const std::function<bool()>& cancel = {});

// GPTQ. W row-major [rows][cols]; H row-major [cols][cols] (symmetric).
// cancel() (optional) is polled between row chunks / blocks; true -> cancelledError().
Result<LayerResult> quantizeLayerGptq(const float* W, int rows, int cols, std::vector<float> H, const QuantConfig& c,
                                      const std::function<bool()>& cancel = {});
// The same with H's factor made beforehand (prepareGptq with the same descAct, damp and block size).
Result<LayerResult> quantizeLayerGptq(const float* W, int rows, int cols, const GptqFactor& factor,
                                      const QuantConfig& c, const std::function<bool()>& cancel = {});
// The factor quantizeLayerGptq works with when act-order is off: U, the upper Cholesky factor of the damped
// H⁻¹ (H⁻¹ = UᵀU), as float, row-major [cols][cols]; dead columns (H_ii = 0) get H_ii = 1 first, damp is
// raised as in quantizeLayerGptq. *dampUsed receives the damp fraction finally used. For views that
// replay GPTQ's column loop step by step (teach/teach.h).
Result<std::vector<float>> dampedInverseCholeskyUpper(std::vector<float> H, int cols, double dampPercent,
                                                      double* dampUsed = nullptr);

// RTN with the same grid (groups of consecutive columns, g_idx = k / groupSize).
LayerResult quantizeLayerRtn(const float* W, int rows, int cols, const QuantConfig& c);

// What a loader computes: W[n][k] = fp16( fp16(scale[g][n]) · (q[n][k] − zero[g][n]) ), g = g_idx[k]
// (AutoGPTQ's QuantLinear multiplies the fp16 scales by the integer difference in fp16).
// Row-major [rows][cols].
std::vector<float> dequantize(const LayerResult& r);

// Relative output error on the calibration inputs: tr(ΔW H ΔWᵀ) / tr(W H Wᵀ), ΔW = W − Ŵ (H symmetric).
double relativeOutputError(const float* W, const std::vector<float>& What, int rows, int cols,
                           const std::vector<float>& H, int threads = 0);

inline float quantizeValue(float x, float scale, float zero, int maxq) {
    float q = __builtin_nearbyintf(x / scale) + zero;
    q = q < 0 ? 0 : (q > static_cast<float>(maxq) ? static_cast<float>(maxq) : q);
    return scale * (q - zero);
}

}  // namespace qz::gptq

// One linear layer in EXL2's scheme (FORMATS.md E.2-E.4; exllamav2 v0.3.2 conversion/adaptivegptq.py):
// act-order permutation by the Hessian diagonal, damp 0.12·mean(diag), upper Cholesky factor of H⁻¹;
// groups of rows (input features) with their own bit width (QParams), per-group per-column 4-bit scales
// with an fp16 group maximum found by exllamav2's p-search, and GPTQ error feedback inside and after
// each group. Packing into the tensors exllamav2's loader reads and the loader's own dequantization.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/result.h"
#include "exl2/exl2_qparams.h"

namespace qz::exl2 {

// The Hessian prepared once per layer input (k/v reuse q's, gate reuses up's).
struct PreparedHessian {
    int n = 0;                      // in_features
    std::vector<int32_t> perm;      // perm[k_stored] = original input row (argsort diag desc)
    std::vector<float> hinv;        // upper Cholesky factor of H_perm⁻¹, row-major [n][n]
    double damp = 0;                // absolute damp finally added to the diagonal
};

// H: [n][n] row-major, Σ xᵀx / number of calibration rows (no factor 2). Consumed.
Result<PreparedHessian> prepareHessian(std::vector<float> H, int n);

struct QuantizedLinear {
    int in = 0, out = 0;
    QParams qp;
    struct Group { int bits; int firstRow; int rows; int qRow; };  // rows in stored order; qRow = first q_weight row
    std::vector<Group> groups;
    std::vector<int32_t> perm, invperm;  // [in]
    std::vector<uint16_t> codes;         // [in][out], stored (permuted) row order, in [0, 2^bits)
    std::vector<uint8_t> qscale;         // [G][out], 1..16
    std::vector<uint16_t> qscaleMax;     // [G], fp16 bits
};

// W in the model's layout [out][in] row-major (a Conv1D weight must be transposed first).
Result<QuantizedLinear> quantizeLinear(const float* W, int out, int in, const PreparedHessian& h, const QParams& qp,
                                       const std::function<bool()>& cancel = {});
// Without a Hessian (exllamav2's RTN path for a huge head): identity perm, no error feedback.
Result<QuantizedLinear> quantizeLinearRtn(const float* W, int out, int in, const QParams& qp);

// The loader's reconstruction, back in the model's layout [out][in].
std::vector<float> dequantize(const QuantizedLinear& q);

// The on-disk tensors (E.2/E.3), all little-endian.
struct PackedLinear {
    std::vector<int32_t> qWeight;    // [qRows][outPad]
    int64_t qRows = 0, outPad = 0;
    std::vector<int32_t> qScale;     // [G][outPad/8]
    std::vector<uint16_t> qScaleMax; // [G] fp16
    std::vector<int16_t> qGroups;    // [2G] (bits, first q_weight row)
    std::vector<int32_t> qInvperm;   // [in]
};
PackedLinear pack(const QuantizedLinear& q);

}  // namespace qz::exl2

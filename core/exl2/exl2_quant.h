// One linear layer in EXL2's scheme (README.md E.2-E.4; exllamav2 v0.3.2 conversion/adaptivegptq.py):
// act-order permutation by the Hessian diagonal, damp 0.12·mean(diag), upper Cholesky factor of H⁻¹;
// groups of rows (input features) with their own bit width (QParams), per-group per-column 4-bit scales
// with an fp16 group maximum found by exllamav2's p-search, and GPTQ error feedback inside and after
// each group. Packing into the tensors exllamav2's loader reads and the loader's own dequantization.
//
// Per group (rows a..b of the permuted Wᵀ, bits b, maxq = 2^b − 1, qzero = 2^(b−1)), as find_params, in fp32:
//   xmax[n] = max_k |w[k,n]| + 1e-12, base[n] = xmax[n]/(maxq/2), smax = max_n base[n],
//   qs[n] = clamp(round_half_even(sqrt(base[n]/smax)·16), 1, 16), s[n] = (qs[n]/16)²·smax;
//   p_i = 0.70·(1 − i/96) + 1.20·(i/96), i = 0..96;
//   err(p) = Σ |clamp(rint(w/(s·p)), −qzero, maxq − qzero)·s·p − w|^3.5   (|e|^3.5 as e³·√e);
//   best p = the first minimum. exllamav2 sums on the GPU with float atomics (and __powf), so its choice
//   between nearly equal p may differ; we sum each column over the rows in fp32, then the columns in double
//   in column order, so the result does not depend on the thread count.
//   q_scale_max = fp16(smax·p) (fp32 product); scale[n] = fp16(fp16(qs²)·fp16(q_scale_max/256)).
// Codes and GPTQ feedback: code = clamp(rint(w/scale) + qzero, 0, maxq), deq = fp16((code − qzero)·scale),
//   e = (w − deq)/U_cc, w[c+1..b) −= U[c, c+1..b)·e inside the group; after the group
//   w[b..) −= U[a..b, b..)ᵀ·E[a..b). find_params runs on the error-updated weights at the group's start.
//   The trailing update is a GEMM (AVX2+FMA kernel when the CPU has it, else Eigen; QZ_NO_AVX2=1 forces
//   Eigen), so its rounding differs from exllamav2's and between those two paths; nothing else uses FMA.
//   Every output column is computed independently, so the result is the same for any thread count.
// The decoded weight (the loader's reconstruct, qdq_util.cuh dq_scale / dq):
//   W[perm[k], n] = fp16( (code − 2^(b−1)) · fp16( fp16(qs²) · fp16(fp16(q_scale_max)/256) ) ),
// which equals the quantizer's deq bit for bit.
//
// Limits (checked, clear errors): in a multiple of 32 (every group must fill whole 32-bit words:
// rows·bits % 32 == 0), in ≤ 65536 (the loader keeps the permutation as 16-bit values), the first q_weight
// row of every group ≤ 65535 (q_groups is int16; values above 32767 are stored as their 16-bit pattern,
// which the loader reads back as uint16), out ≥ 1 (any; pack() pads to a multiple of 32), finite weights.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/result.h"
#include "exl2/exl2_qparams.h"

namespace qz::exl2 {

// The Hessian prepared once per layer input (k/v reuse q's, gate reuses up's).
struct PreparedHessian {
    int n = 0;                 // in_features
    std::vector<int32_t> perm; // perm[k_stored] = original input row (argsort diag desc)
    std::vector<float> hinv;   // upper Cholesky factor of H_perm⁻¹, row-major [n][n]
    double damp = 0;           // absolute damp finally added to the diagonal
    int dampTries = 0;         // how many times the damp was added (1 = no Cholesky failure)
};

// H: [n][n] row-major, Σ xᵀx / number of calibration rows (no factor 2). Consumed.
//   perm: the diagonal sorted in descending order; ties keep the lower original index first (a stable
//   sort; torch.argsort on the GPU does not promise any tie order).
//   damp = max(0.12·mean(diag H_perm), 1e-5), added to the diagonal; while the Cholesky factorization
//   fails (or gives non-finite values) it is added again, at most 10 times in all, then an error.
//   U = upper Cholesky factor of H⁻¹, computed in double: with R the order-reversing permutation and
//   R·H·R = L·Lᵀ, U = R·L⁻¹·R (then UᵀU = H⁻¹ and U is upper triangular with a positive diagonal, so it
//   is the factor exllamav2 gets from cholesky(cholesky_inverse(cholesky(H)), upper=True)).
// Non-finite entries or a wrong size are errors. cancel() is polled between blocks of the factorization
// and of the inversion. Deterministic for any thread count.
Result<PreparedHessian> prepareHessian(std::vector<float> H, int n, const std::function<bool()>& cancel = {},
                                       int threads = 0);

struct QuantizedLinear {
    int in = 0, out = 0;
    QParams qp;
    struct Group {
        int bits;
        int firstRow;
        int rows;
        int qRow;
    }; // rows in stored order; qRow = first q_weight row
    std::vector<Group> groups;
    std::vector<int32_t> perm, invperm; // [in]; invperm[perm[k]] = k
    std::vector<uint16_t> codes;        // [in][out], stored (permuted) row order, in [0, 2^bits)
    std::vector<uint8_t> qscale;        // [G][out], 1..16
    std::vector<uint16_t> qscaleMax;    // [G], fp16 bits
};

// The groups a QParams gives a layer with `in` input rows (the quantizer's and the packer's layout), or an
// error when the setting or the shape cannot be stored (see the limits above).
Result<std::vector<QuantizedLinear::Group>> planGroups(const QParams& qp, int in);

// W in the model's layout [out][in] row-major (a Conv1D weight must be transposed first).
// cancel() is polled between groups. threads: 0 = defaultThreadCount().
Result<QuantizedLinear> quantizeLinear(const float* W, int out, int in, const PreparedHessian& h,
                                       const QParams& qp, const std::function<bool()>& cancel = {},
                                       int threads = 0);
// Without a Hessian: identity perm, no error feedback.
Result<QuantizedLinear> quantizeLinearRtn(const float* W, int out, int in, const QParams& qp,
                                          int threads = 0);
// exllamav2's RTN path for a huge head (quantize.py quant_lm_head, > 1e9 elements): prepare(no_h_inv=True)
// still orders the rows by the Hessian diagonal (actOrderPerm), only the error feedback is skipped.
Result<QuantizedLinear> quantizeLinearRtn(const float* W, int out, int in, const QParams& qp, int threads,
                                          const std::vector<int32_t>& perm);
// The act-order permutation prepareHessian uses: rows sorted by diag(H) descending, ties by index
// (H [n][n] row-major; only the diagonal is read).
std::vector<int32_t> actOrderPerm(const std::vector<float>& H, int n);

// The loader's reconstruction, back in the model's layout [out][in].
std::vector<float> dequantize(const QuantizedLinear& q);
// The decoded scale of group g, column n (fp16 value as float): fp16(fp16(qs²)·fp16(fp16(qsm)/256)).
float groupScale(uint8_t qscale, uint16_t qscaleMaxFp16);

// fp16(x) as a float, round to nearest even (subnormals, ±inf above 65519.99; NaN stays NaN): the
// quantizer's fast inline version of fp16ToFp32(fp32ToFp16(x)), exposed for tests.
float fp16Round(float x);

// Relative output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of Ŵ against W (both [out][in]) under H [in][in] (original
// order, undamped). For tests and reports.
double relativeOutputError(const float* W, const std::vector<float>& What, int out, int in,
                           const std::vector<float>& H, int threads = 0);

// The on-disk tensors (E.2/E.3), all little-endian.
//   q_weight: per group, each column's codes as one little-endian bitstream over the group's rows (value i
//   at bits [i·b, i·b + b) of the concatenated words; runs of 16/32/8/32/16/4 rows in 1/3/1/5/3/1 words for
//   2/3/4/5/6/8 bits); columns out..outPad-1 hold 2^(b−1).
//   q_scale: qscale − 1 in 4 bits, 8 columns per word, column 8w+i at bits [4i, 4i+4); pad columns hold 15
//   (exllamav2 pads qscale with 0 before subtracting 1, and the 16-bit 0xFFFF sets every nibble above).
//   q_groups: (bits, first q_weight row) per group; q_invperm: invperm.
struct PackedLinear {
    std::vector<int32_t> qWeight; // [qRows][outPad]
    int64_t qRows = 0, outPad = 0;
    std::vector<int32_t> qScale;     // [G][outPad/8]
    std::vector<uint16_t> qScaleMax; // [G] fp16
    std::vector<int16_t> qGroups;    // [2G] (bits, first q_weight row)
    std::vector<int32_t> qInvperm;   // [in]
};
PackedLinear pack(const QuantizedLinear& q);

} // namespace qz::exl2

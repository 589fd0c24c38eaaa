// Scalar helper routines shared by ggml's reference quantizers (README.md B.4), used by the legacy
// imatrix paths (ggml/quants_legacy.cpp) and the K-quants (ggml/kquants*.cpp).
//
// Names follow ggml's so that the algorithms can be checked against README.md B.4 line by line.
// Every routine evaluates its float expressions in exactly the order ggml's C code does (left to
// right, no FMA: the project builds with -ffp-contract=off), so results are bit-identical.
//
//   nearest_int(x)      round half to even via the 1.5*2^23 trick (valid for |x| <= 4194303)
//   make_qx_quants      symmetric signed codes L in [0, 2*nmax) (stored with +nmax), returns scale
//                       (negative when the largest-magnitude x is positive); rmse_type 0 = plain,
//                       1 = weighted search (w = qw or x^2), <0 = "return early" variant
//   make_q3_quants      symmetric codes with coordinate-descent refinement (Q3_K ref)
//   make_qkx2_quants    asymmetric codes in [0, nmax] with a min (weights required)
//   make_qkx3_quants    as qkx2, weights may be null (then x^2), degenerate test max <= min
//   make_qp_quants      positive codes in [0, nmax] for scales/mins, weighted by quant_weights
//   get_scale_min_k4    unpack the 6-bit scale/min pair j of Q4_K/Q5_K
#pragma once

#include <cstdint>
#include <cstring>

namespace qz::ggml {

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS: "all zero" threshold
constexpr int kQK_K = 256;

// Inline: it sits in every inner loop (an out-of-line call cost ~6 % of the Q6_K time).
inline int nearest_int(float fval) {
    const float shifted = fval + 12582912.f;  // 1.5 * 2^23: the mantissa now holds round-half-even(fval)
    int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights /*nullable*/, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

}  // namespace qz::ggml

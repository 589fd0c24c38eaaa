// Round-to-nearest integer quantization as the first notebook defines it (SEEDS.md §1), generalised
// to 2..8 bits and to three granularities.
//
//   absmax     (symmetric):  qmax = 2^(b-1) - 1;  s = qmax / max|X|;  Xq = round(s·X);  Xdq = Xq / s
//   zero-point (asymmetric): r = max - min (1 if 0);  s = (2^b - 1) / r;  zp = round(-s·min - 2^(b-1));
//                            Xq = clip(round(s·X + zp), -2^(b-1), 2^(b-1) - 1);  Xdq = (Xq - zp) / s
//
// At b = 8 these are exactly the notebook's formulas (127 and 255, -128..127). round() rounds half
// to even, as torch.round does in the notebook.
// Granularity: one scale per tensor, per row (vector-wise, the last dimension is the row), or per
// group of G consecutive values of a row.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <optional>

#include "common/result.h"

namespace qz {

enum class QuantMethod { Absmax, ZeroPoint };
enum class Granularity { Tensor, Row, Group };

struct QuantSpec {
    QuantMethod method = QuantMethod::Absmax;
    int bits = 8;                       // 2..8
    Granularity granularity = Granularity::Tensor;
    int groupSize = 128;                // for Granularity::Group

    Status validate() const;
    std::string describe() const;       // "absmax 8-bit per tensor"
};

std::string_view methodName(QuantMethod m);          // "absmax", "zeropoint"
std::optional<QuantMethod> parseMethod(std::string_view s);
std::string_view granularityName(Granularity g);     // "tensor", "row", "group"
std::optional<Granularity> parseGranularity(std::string_view s);

// Parameters of one quantization group.
struct GroupParams {
    float scale = 1.f;   // s above (quantized = round(s·x [+ zp]))
    int32_t zero = 0;    // zp (0 for absmax)
};

// Computes the group parameters of n values.
GroupParams computeGroupParams(QuantMethod m, int bits, const float* x, int64_t n);
// Quantizes one value with given parameters.
int32_t quantizeValue(QuantMethod m, int bits, const GroupParams& p, float x);
float dequantizeValue(const GroupParams& p, int32_t q);

// Fake-quantizes a [rows × cols] tensor: writes dequantized values to `out` and, if codes is not null,
// the integer codes (int8 range for every bit width ≤ 8). Multi-threaded over rows/groups.
// `out` may alias `x`.
void quantizeDequantize(const QuantSpec& spec, const float* x, int64_t rows, int64_t cols, float* out,
                        int8_t* codes = nullptr);

// Storage of the quantized tensor: b-bit codes packed + per group an F32 scale (and an int16 zero
// point for zero-point). Returns bytes.
uint64_t quantizedBytes(const QuantSpec& spec, int64_t rows, int64_t cols);

}  // namespace qz

// Round-to-nearest integer quantization as the first notebook defines it (README.md §1), generalised
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
//
// bitsandbytes' methods share the spec (details in quant/bnb.h and quant/llm_int8.h):
//   nf4 / fp4: 4-bit codes from a 16-value code book, block-wise absmax over the flattened tensor
//              (blockSize, default 64), optionally with double quantization of the block scales;
//              `bits` and `granularity` are ignored (the format fixes them).
//   llm-int8:  LLM.int8(): per-row absmax INT8 with the input-feature columns whose calibration
//              activations reach `threshold` kept in fp16. Needs calibration statistics (the quantize
//              job runs the calibration text first); without them no column is an outlier.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "common/result.h"

namespace qz {

enum class QuantMethod { Absmax, ZeroPoint, Nf4, Fp4, LlmInt8 };
enum class Granularity { Tensor, Row, Group };

struct QuantSpec {
    QuantMethod method = QuantMethod::Absmax;
    int bits = 8;                       // 2..8
    Granularity granularity = Granularity::Tensor;
    int groupSize = 128;                // for Granularity::Group
    // nf4 / fp4
    int blockSize = 64;                 // power of two, 32..4096 (bitsandbytes' block sizes)
    bool doubleQuant = false;           // 8-bit quantization of the block scales (blocks of 256)
    // llm-int8
    float threshold = 6.0f;             // outlier feature: calibration max|x| >= threshold
    std::string calibrationPath{};      // calibration text file (UTF-8)
    int calibCtx = 512;                 // tokens per calibration chunk (clamped to the model's context)
    int calibChunks = 16;               // at most this many chunks

    Status validate() const;
    std::string describe() const;       // "absmax 8-bit per tensor"
};

std::string_view methodName(QuantMethod m);          // "absmax", "zeropoint", "nf4", "fp4", "llm-int8"
bool isBnbFourBit(QuantMethod m);                    // nf4 or fp4
bool needsCalibration(QuantMethod m);                // llm-int8
int effectiveBits(const QuantSpec& spec);            // bits of a code: spec.bits, 4 for nf4/fp4, 8 for llm-int8
// The code values of a code-book method, normalised to [-1, 1], in code order (index = the stored
// 4-bit code): the 16 NF4 or FP4 values (bnb.h). Empty for the integer methods.
std::vector<float> codeValues(const QuantSpec& spec);
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
// the integer codes (int8 range for every bit width ≤ 8; nf4/fp4: the 4-bit code 0..15; llm-int8: the
// int8 code). Multi-threaded over rows/groups. `out` may alias `x`.
// llm-int8 here has no calibration and no tensor name: per stored row, no outlier column (the quantize
// job calls quant/llm_int8.h directly with the outlier features and the Conv1D orientation).
void quantizeDequantize(const QuantSpec& spec, const float* x, int64_t rows, int64_t cols, float* out,
                        int8_t* codes = nullptr);

// Storage of the quantized tensor: b-bit codes packed + per group an F32 scale (and an int16 zero
// point for zero-point). Returns bytes. nf4/fp4: bnb::fourBitBytes (exact); llm-int8: int8 codes + fp32
// row scales with no outlier column (llmInt8Bytes gives the cost with k outlier columns).
uint64_t quantizedBytes(const QuantSpec& spec, int64_t rows, int64_t cols);

}  // namespace qz

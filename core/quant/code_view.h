// The raw codes of a quantized tensor, as the first notebook prints them (README.md §1: the original
// weights, the absmax int8 tensor, the zero-point int8 tensor and the dequantized ones), for the GUI's
// "Codes" workspace and `quantzoo-cli quantize --show-codes`.
//
// makeCodeWindow quantizes the tensor with the spec — only the rows it shows (the window's and the
// torch print's) when the codes are independent per stored row (row / group scales, LLM.int8() of an
// [out × in] weight), else the whole tensor (per-tensor scale, 4-bit blocks, Conv1D's per-column
// scales) — and keeps a window [row0, row0+rows) × [col0, col0+cols) of the stored layout:
// per element the original value, the integer code, the dequantized value, which quantization group
// (scale, zero point) it used and, for LLM.int8(), whether it sits in an outlier feature kept in fp16.
// Codes per method:
//   absmax / zero-point: the b-bit integer (int8 range), q = round(s·x [+ zp]); group scale s, zero zp.
//   nf4 / fp4:           the 4-bit index 0..15 into the code book; the group is the block of blockSize
//                        consecutive values (crossing rows), scale = the block's decoding scale (absmax,
//                        or the double-quantized one), x ≈ codeBook[q]·scale.
//   llm-int8:            int8 q = round(x·127/rowmax) per output feature; outlier features (input
//                        features) are kept in fp16 (their code is 0). The group is the output feature;
//                        scale = 127/rowmax, absmax = rowmax.
// torchFormat prints a tensor as torch's repr does with default print options (precision 4, line
// width 80, more than 1000 elements summarised to the first and last 3 along each dimension,
// "tensor(" prefix, ", dtype=torch.int8)" suffix for integer tensors), so the text can be set next to
// the notebook's output.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "quant/simple_quant.h"

namespace qz {

struct CodeGroup {
    int64_t index = 0;    // tensor: 0; row: row; group: row·groupsPerRow + k; block; output feature
    std::string label;    // "tensor", "row 3", "row 3 group 1 (cols 128..255)", "block 5", "output 7"
    float scale = 1;      // see above
    int32_t zero = 0;     // zero-point only
    float absmax = 0;     // max|x| (absmax, nf4/fp4 block absmax, llm-int8 rowmax)
    float lo = 0, hi = 0; // min and max of the group's values (zero-point)
};

struct CodeWindowRequest {
    int64_t row0 = 0, col0 = 0;           // top-left element shown (clamped into the tensor)
    int64_t rows = 8, cols = 8;           // size (clamped)
    bool inputIsRows = false;             // llm-int8: weight stored [in × out] (GPT-2 Conv1D, llm_int8.h)
    std::vector<int32_t> outlierFeatures; // llm-int8: input features kept in fp16
    bool torchText = true;                // also fill the torch prints of the whole tensor
};

struct CodeWindow {
    QuantSpec spec;
    int64_t tensorRows = 0, tensorCols = 0;
    int64_t row0 = 0, col0 = 0, rows = 0, cols = 0;
    bool oneDim = false;                      // a vector (printed as torch prints 1-D tensors)
    std::vector<float> original, dequantized; // rows × cols, row-major (stored layout)
    std::vector<int32_t> codes;
    std::vector<uint8_t> keptFp16; // llm-int8: element of an outlier feature
    std::vector<int32_t> group;    // per element: index into groups
    std::vector<CodeGroup> groups; // the groups touching the window, in order of appearance
    std::vector<float> codeBook;   // nf4 / fp4: the 16 values
    int64_t outlierFeatures = 0;   // llm-int8: number of outlier features (whole tensor)
    // torch prints of the whole tensor (summarised as torch does), empty unless requested
    std::string torchOriginal, torchCodes, torchDequantized;

    int64_t at(int64_t r, int64_t c) const { return r * cols + c; }
};

// x is the tensor in its stored layout [rows × cols] (a 1-D tensor: rows = 1). oneDim: print as 1-D.
Result<CodeWindow> makeCodeWindow(const QuantSpec& spec, const float* x, int64_t rows, int64_t cols,
                                  const CodeWindowRequest& request, bool oneDim = false);

enum class TorchDType { Float32, Int8, UInt8 };
// torch's repr of a [rows × cols] tensor (oneDim: of a vector of cols values).
std::string torchFormat(std::span<const float> values, int64_t rows, int64_t cols, TorchDType dtype,
                        bool oneDim = false);
std::string torchFormat(std::span<const int32_t> values, int64_t rows, int64_t cols, TorchDType dtype,
                        bool oneDim = false);

// Plain text of a window for copying / the CLI: a header (tensor, method, window), the scale / zero
// point of each group, the four matrices (original, codes, dequantized, error) as torch prints them and,
// when filled, the whole-tensor prints as the notebook shows them.
std::string codeWindowText(const CodeWindow& w, const std::string& tensorName);

// One line describing a group's parameters: "scale = 127 / max|X| = 41.1325 (max|X| 3.0876)".
std::string describeGroup(const CodeWindow& w, const CodeGroup& g);

} // namespace qz

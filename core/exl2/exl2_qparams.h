// EXL2's quantization settings (FORMATS.md E.5; exllamav2 v0.3.2 conversion/qparams.py): one QParams says
// which bit widths a linear layer gets, on which proportion of its input rows, with which group size per
// bit width. The fixed candidate tables (19 attention options of [q, k, v, o], 17 MLP options of
// [gate, up, down], the lm_head options by head bits) are exllamav2's; the measurement pass tries them
// and the optimizer picks one option per module.
//
// EXL2 "rows" are the layer's input features (in), "columns" its output features (out).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace qz::exl2 {

struct QParams {
    std::vector<int> bits;           // in the order groups are laid out (non-increasing)
    std::vector<double> bitsProp;    // proportion of rows for each entry of bits (sum 1)
    std::map<int, int> groupSize;    // bits -> group size (rows per group)
    int scaleBits = 4;

    // Groups per entry of bits: g_j = ceil(min(rows·p_j, remaining)/gs(b_j)), remaining −= g_j·gs(b_j).
    std::vector<int> groupsPerBits(int64_t rows) const;
    // exllamav2's total_bits(shape = [rows, columns]) incl. q_scale_max, q_groups, q_scale, q_invperm
    // (+16 per output feature with a bias).
    int64_t totalBits(int64_t rows, int64_t columns, bool bias = false) const;
    double bpw(int64_t rows, int64_t columns, bool bias = false) const;
    std::string desc() const;        // "0.05:6b_32g/0.95:5b_32g s4", as exllamav2 prints it
    // measurement.json's QP dict: {"group_size": {"<bits>": gs}, "bits": [...], "bits_prop": [...], "scale_bits": 4}
    std::string toJson() const;
    bool operator==(const QParams& o) const;
};

Result<QParams> qparamsFromJson(const std::string& json);

// The candidate tables. attnOptions()[i] = {q, k, v, o}; mlpOptions()[i] = {gate, up, down}.
const std::vector<std::vector<QParams>>& attnOptions();
const std::vector<std::vector<QParams>>& mlpOptions();
// lm_head by head bits (2, 3, 4, 5, 6, 8); other values are an error.
Result<QParams> headOptions(int headBits);

}  // namespace qz::exl2

// EXL2's quantization settings (README.md E.5; exllamav2 v0.3.2 conversion/qparams.py): one QParams says
// which bit widths a linear layer gets, on which proportion of its input rows, with which group size per
// bit width. The fixed candidate tables (19 attention options of [q, k, v, o], 17 MLP options of
// [gate, up, down], the lm_head options by head bits) are exllamav2's; the measurement pass tries them
// and the optimizer picks one option per module.
//
// EXL2 "rows" are the layer's input features (in), "columns" its output features (out).
//
// Valid settings (validateQParams): bits from {2, 3, 4, 5, 6, 8} in strictly decreasing order (the loader
// needs the groups in non-increasing bit order), each proportion finite and > 0, Σ proportions = 1 (within
// 1e-9; exllamav2 asserts exact equality, every table entry sums to exactly 1.0), a group size for every
// bit width, a multiple of 32 (of 16 for 2 bits, qparams.py:129) and at most 65536, scale_bits = 4.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/result.h"

namespace qz::exl2 {

struct QParams {
    std::vector<int> bits;        // in the order groups are laid out (non-increasing)
    std::vector<double> bitsProp; // proportion of rows for each entry of bits (sum 1)
    std::map<int, int> groupSize; // bits -> group size (rows per group)
    int scaleBits = 4;

    // Groups per entry of bits: g_j = ceil(min(rows·p_j, remaining)/gs(b_j)), remaining −= g_j·gs(b_j),
    // in double precision as Python computes it. Exactly exllamav2's numbers, so an entry may be 0 (or even
    // negative) when earlier entries already cover every row (possible only for tiny layers);
    // the quantizer treats those as 0 groups, totalBits counts them as exllamav2 does.
    std::vector<int> groupsPerBits(int64_t rows) const;
    // exllamav2's total_bits(shape = [rows, columns]) incl. q_scale_max, q_groups, q_scale, q_invperm
    // (+16 per output feature with a bias).
    int64_t totalBits(int64_t rows, int64_t columns, bool bias = false) const;
    double bpw(int64_t rows, int64_t columns, bool bias = false) const; // numel includes the bias
    std::string desc() const; // "0.05:6b_32g/0.95:5b_32g s4", as exllamav2 prints it
    // measurement.json's QP dict: {"group_size": {"<bits>": gs}, "bits": [...], "bits_prop": [...],
    // "scale_bits": 4}
    std::string toJson() const;
    bool operator==(const QParams& o) const;
};

// Checks the rules above (message names the offending entry).
Status validateQParams(const QParams& qp);

// Parses and validates one QP dict (as toJson writes it). group_size may also be a single integer or a
// list parallel to bits (exllamav2's QParams constructor accepts those forms too).
Result<QParams> qparamsFromJson(const std::string& json);
Result<QParams> qparamsFromJsonValue(const nlohmann::json& j);
Result<QParams> qparamsFromJsonValue(const nlohmann::ordered_json& j);
// The QP dict with exllamav2's key order (group_size, bits, bits_prop, scale_bits), as toJson() dumps it.
nlohmann::ordered_json qparamsToJsonValue(const QParams& qp);

// The candidate tables. attnOptions()[i] = {q, k, v, o}; mlpOptions()[i] = {gate, up, down}.
const std::vector<std::vector<QParams>>& attnOptions();
const std::vector<std::vector<QParams>>& mlpOptions();
// lm_head by head bits (2, 3, 4, 5, 6, 8); other values are an error.
Result<QParams> headOptions(int headBits);

// exllamav2's get_qparams_reduced: the distinct settings of each slot (by desc(), first occurrence order)
// and, per option, the index of its setting in each slot. With ignoreGate, slot 0 is skipped: perSlot[0]
// stays empty and each map has one entry fewer (slots 1..dim-1), as in qparams.py.
struct QParamsReduced {
    std::vector<std::vector<QParams>> perSlot; // [slot][distinct setting]
    std::vector<std::vector<int>> maps;        // [option][slot] -> index into perSlot[slot]
};
QParamsReduced reduceQParams(const std::vector<std::vector<QParams>>& options, bool ignoreGate = false);

} // namespace qz::exl2

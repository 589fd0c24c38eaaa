// Reader for EXL2 folders (exllamav2's layout, as exl2/exl2_export.h writes them): the quantized linears'
// weights decoded as exllamav2's loader reconstructs them, in the original model's layout [out, in], for
// histograms, error figures and evaluation. Facts: core/exl2/README.md E.1 (folder: every *.safetensors,
// no index; quantization_config), E.2 (q_weight / q_scale / q_scale_max / q_groups / q_invperm: dtypes,
// shapes, the loader's checks, out padded to 32), E.3 (bit streams per column within each group), E.4
// (dequantization W = (q − 2^(b−1))·fp16((qscale + 1)²·fp16(q_scale_max/256)), in fp16).
// phi3's fused qkv_proj and gate_up_proj are stored split (README.md E.8: q_proj, k_proj, v_proj rows
// [0, q), [q, q+kv), [q+kv, q+2kv); gate_proj, up_proj rows [0, ff), [ff, 2ff)): the reader puts the parts'
// rows back in the fused tensor's order, so the fused weight is read as one tensor of the original.
// Every shape, count, group and permutation entry is checked against the others before use (hostile input).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "infer/weight_source.h"
#include "model/model.h"

namespace qz {

// One linear the folder stores for rows of a fused weight of the original.
struct Exl2Part {
    std::string weightName; // e.g. model.layers.0.self_attn.k_proj.weight
    int64_t rows = 0;
};

struct Exl2Folder {
    std::shared_ptr<Model> model; // the folder's *.safetensors opened as a HF model
    double bits = 0;              // quantization_config.bits (the target bpw), 0 if not given
    int headBits = 0;             // quantization_config.head_bits, 0 if not given
    // The original's fused weights (phi3) -> the linears exllamav2 splits them into, in row order.
    std::map<std::string, std::vector<Exl2Part>> split;
};

// True if `path` is a folder whose config.json has quantization_config.quant_method "exl2".
bool looksLikeExl2Folder(const std::string& path);

// The folder as a quantization of `original`: for a phi3 original, its fused weights are mapped onto the
// split linears by the original's head counts and feed-forward size (infer/hparams.h).
Result<Exl2Folder> openExl2Folder(const std::string& path, const Model& original);

// The weight `weightName` ("model.layers.0.self_attn.q_proj.weight") of shape [out, in] as the original
// holds it: decoded from <module>.q_* if the folder stores it quantized, otherwise its stored values
// (fp16 in the folder); a fused weight from its split parts (all of them quantized, their rows adding up
// to out). `found` is false when the folder has none of these.
struct Exl2Tensor {
    bool found = false;
    bool quantized = false;
    std::vector<float> values;
    uint64_t bytes = 0; // storage in the folder (q_weight + q_scale + q_scale_max + q_groups + q_invperm;
                        // a fused weight: its parts' together)
};
Result<Exl2Tensor> readExl2Weight(const Exl2Folder& folder, const std::string& weightName, int64_t out,
                                  int64_t in);

// The quantized weight as a row source for the engine (rows of W [out][in] decoded on demand from the
// mapped q_weight; the same values readExl2Weight gives). Holds per group its bits, rows and scale and the
// input permutation (in values); a fused weight: that of each part. nullptr when the folder does not store
// the weight quantized.
Result<std::shared_ptr<const WeightRowSource>>
exl2RowSource(const Exl2Folder& folder, const std::string& weightName, int64_t out, int64_t in);

} // namespace qz

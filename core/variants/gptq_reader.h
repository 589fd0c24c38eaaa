// Reader for GPTQ checkpoint folders (AutoGPTQ / GPTQModel layout, as gptq/gptq_export.h writes them):
// the quantized linears' dequantized weights in the original model's layout, for histograms, error
// figures and evaluation. Facts: core/gptq/README.md D.1 (GPT-2 Conv1D orientation), D.2 (tensors and
// shapes), D.3 (packing, v1 zero points stored minus one, dequantization W[n][k] = scales[g][n]·(q[k][n] −
// z[g][n]) with g = g_idx[k]), D.4 (quantize_config.json).
// Every shape, count and group index is checked against the others before use (hostile input).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "infer/weight_source.h"
#include "gptq/gptq_layers.h"
#include "infer/engine.h"
#include "model/model.h"

namespace qz {

struct GptqFolder {
    std::shared_ptr<Model> model; // the folder opened as a HF model (qweight / qzeros / scales / g_idx ...)
    int bits = 4;
    int groupSize = 128;
    bool v1 = true; // checkpoint_format "gptq" (zero − 1 stored) or "gptq_v2"
};

// True if `path` is a folder with a quantize_config.json (or a config.json quantization_config) naming
// quant_method "gptq".
bool looksLikeGptqFolder(const std::string& path);

Result<GptqFolder> openGptqFolder(const std::string& path);

// The weight `weightName` ("model.layers.0.self_attn.q_proj.weight") in the original layout
// (Linear [out, in]; GPT-2 Conv1D [in, out]): dequantized if the folder stores it quantized, otherwise
// its stored values (fp16 in the folder). `found` is false when the folder has neither.
struct GptqTensor {
    bool found = false;
    bool quantized = false;
    std::vector<float> values;
    std::vector<int64_t> shape;
    uint64_t bytes = 0; // storage in the folder (qweight + qzeros + scales + g_idx, or the tensor)
};
Result<GptqTensor> readGptqWeight(const GptqFolder& folder, const std::string& weightName);

// The quantized weight `weightName` as a row source for the engine (infer/weight_source.h): rows of
// W [out][in] decoded on demand from the mapped qweight, the same values readGptqWeight gives. Holds the
// zero points, scales and group indices unpacked (2·G·out + in values) and the folder's mapping. nullptr
// when the folder does not store the weight quantized. For GPT-2's Conv1D weights (the original stores
// them [in, out]) the source is transposed (WeightRowSource::transposed): the same rows of W [out, in].
Result<std::shared_ptr<const WeightRowSource>> gptqRowSource(const GptqFolder& folder,
                                                             const std::string& weightName);
// The quantized linears of decoder block `block` (gptq/gptq_layers.h planLayers of the original model) and
// their biases, read back from the folder in the original layout: what an engine of the original model
// needs (Engine::setWeight) to run that block as the checkpoint does, one block at a time. Fails when one
// of them is missing or not quantized.
Result<WeightOverrides> readGptqBlock(const GptqFolder& folder, const gptq::LayerPlan& plan, int block);

} // namespace qz

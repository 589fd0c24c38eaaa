// What a tensor's name says about its place in the model (names as Hugging Face and GGUF files write them).
#pragma once

#include <string_view>

namespace qz {

// The expert index of a per-expert tensor of a mixture-of-experts layer as Hugging Face checkpoints name
// them ("….experts.E.…": qwen3_moe's mlp.experts.E.gate_proj, mixtral's block_sparse_moe.experts.E.w1),
// or -1 (GGUF stores the experts of a layer stacked in one 3-D tensor, ffn_*_exps, so it has none).
// (The layer index is qz::layerIndexOf in model/model.h.)
int expertIndexOf(std::string_view tensorName);

}  // namespace qz

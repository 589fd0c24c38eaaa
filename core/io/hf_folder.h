// Hugging Face model folder: config.json plus model.safetensors, or shards listed by
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}), README.md F.2.
// Shard paths must stay inside the folder (no absolute paths, no "..", no symlink escaping it; the one
// exception is the hub cache layout, where snapshots/<rev>/<shard> links to ../../blobs/<hash>);
// every tensor named in the index must be in the shard it names, and no tensor may appear twice.
// Shard files that the index does not list are ignored. Tensors of a listed shard that the index
// does not name are still part of the model (loaders read whole shards).
// Without an index or model.safetensors, every *.safetensors file of the folder is read (e.g. GPTQ
// folders with "gptq_model-4bit-128g.safetensors"), in name order.
// Files come in shard-name order and tensors by data offset within each file.
// Mixtral and Qwen3-MoE folders with transformers v5's fused experts (a layer's mlp.experts.gate_up_proj
// [E, 2F, H] and mlp.experts.down_proj [E, H, F], README.md F.3) are opened as the per-expert layout: each
// expert's gate / up / down is a 2-D tensor of its own (a view of the fused tensor's bytes, named as the
// per-expert checkpoints name it), so every reader of the model sees one layout.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "model/model.h"

namespace qz {

Result<std::shared_ptr<Model>> openHfFolder(const std::string& dir);

// Fills model.architecture / model.metadata / model.configJson from a config.json text.
// Returns an error naming the file if it is not a JSON object.
// metadata: well-known keys first (architectures, model_type, hidden_size / n_embd, num_hidden_layers /
// n_layer, heads, kv heads, head_dim, intermediate_size, vocab_size, context length, torch_dtype,
// rope_theta, tie_word_embeddings, quantization_config, ...), then every other non-null top-level key in
// file order. Values are display strings: strings unquoted, lists joined with ", ", objects as compact JSON.
Status applyHfConfig(Model& model, const std::string& configPath);

// Refuses an output path that is, or is a hard link or symlink to, a file of the opened model: the file
// opened, every mapped shard, and (for a folder) every file directly in it (config, tokenizer, side files).
// Every writer checks this before creating its output (an export onto model.safetensors would destroy the
// input).
Status refuseOverwritingModel(const Model& model, const std::string& outputPath);

} // namespace qz

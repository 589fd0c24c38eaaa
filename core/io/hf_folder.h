// Hugging Face model folder: config.json plus model.safetensors, or shards listed by
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}), FORMATS.md F.2.
// Shard paths must stay inside the folder (no absolute paths, no "..", no symlink escaping it);
// every tensor named in the index must be in the shard it names, and no tensor may appear twice.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "model/model.h"

namespace qz {

Result<std::shared_ptr<Model>> openHfFolder(const std::string& dir);

// Fills model.architecture / model.metadata / model.configJson from a config.json text.
// Returns an error naming the file if it is not a JSON object.
Status applyHfConfig(Model& model, const std::string& configPath);

}  // namespace qz

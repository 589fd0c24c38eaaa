#include "gguf/gguf_reader.h"
namespace qz {
Result<std::shared_ptr<Model>> openGgufModel(const std::string& p) { return makeError(p + ": GGUF reader not implemented"); }
}

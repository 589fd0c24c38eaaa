#include "infer/hparams.h"

namespace qz {

Result<InferHParams> readInferHParamsGguf(const Model& model) {
    return makeError(model.path + ": reading GGUF hyper-parameters is not available yet");
}

}  // namespace qz

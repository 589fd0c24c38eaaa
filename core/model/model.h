// A model opened for inspection and quantization: its tensors (names, shapes, dtypes, where their
// bytes live in memory-mapped files) and a display-ready architecture summary.
//
// Readers (io/safetensors.h, io/hf_folder.h, gguf/gguf_reader.h) validate everything before they
// build a Model, so a Model's tensor byte ranges are always inside their mapped files.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/mapped_file.h"
#include "common/progress.h"
#include "common/result.h"

namespace qz {

enum class ModelFormat { SafetensorsFile, HuggingFaceFolder, Gguf };

struct TensorInfo {
    std::string name;            // exactly as in the file
    std::vector<int64_t> shape;  // outermost first (PyTorch order); a GGUF ne[] is stored reversed here
    DType dtype = DType::F32;
    uint32_t fileIndex = 0;      // index into Model::files
    uint64_t offset = 0;         // absolute byte offset of the data in that file
    uint64_t nbytes = 0;

    uint64_t numel() const;
    int64_t cols() const { return shape.empty() ? 1 : shape.back(); }   // innermost dimension
    int64_t rows() const;                                                // product of the others
    std::string shapeString() const;                                     // "[4096, 14336]"
};

struct MetaItem {
    std::string key;
    std::string value;  // display form
};

struct Model {
    ModelFormat format = ModelFormat::SafetensorsFile;
    std::string path;          // what the user opened (file or folder)
    std::string name;          // short display name
    std::string architecture;  // config.json model_type / GGUF general.architecture; may be empty
    std::vector<MetaItem> metadata;  // architecture summary (config.json entries or GGUF key/values)
    std::string configJson;    // raw config.json text for HF models (empty otherwise)
    std::vector<std::shared_ptr<MappedFile>> files;
    std::vector<TensorInfo> tensors;
    std::shared_ptr<const void> formatData;  // reader-specific parsed data (e.g. GGUF key/values)

    const TensorInfo* find(std::string_view tensorName) const;
    std::span<const uint8_t> rawBytes(const TensorInfo& t) const;
    uint64_t totalParameters() const;
    uint64_t totalBytes() const;
};

// Opens a HF folder, a .safetensors file or a .gguf file (decided by folder / magic bytes).
Result<std::shared_ptr<Model>> openModel(const std::string& path);

// The tensor's values as F32 (converting F16/BF16/..., dequantizing ggml block types).
// Fails with a clear message for dtypes that cannot be converted.
Status readTensorF32(const Model& m, const TensorInfo& t, std::span<float> out);
Result<std::vector<float>> readTensorF32(const Model& m, const TensorInfo& t);

// Layer index parsed from common naming schemes ("model.layers.12.", "h.3.", "blk.7."), or -1.
int layerIndexOf(std::string_view tensorName);

}  // namespace qz

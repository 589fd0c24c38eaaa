// GGUF export: a HF model (converted as convert_hf_to_gguf.py does) or a GGUF file (re-quantized as
// llama-quantize does) written as F32 / F16 / BF16, a legacy type (Q8_0 Q4_0 Q4_1 Q5_0 Q5_1) or a
// K-quant mix (Q2_K Q3_K_S/M/L Q4_K_S/M Q5_K_S/M Q6_K), optionally with an importance matrix.
//
// Streaming: one tensor at a time is produced as F32, quantized and appended to the file, so peak
// memory is about the largest tensor (F32) plus its quantized bytes. The file is written under a
// temporary name and renamed when complete; a failure or a cancel leaves nothing under the final
// name and never touches the input. A split output renames its parts only once every part is complete
// (and removes the renamed ones if a later rename fails).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/progress.h"
#include "common/result.h"
#include "gguf/gguf_file.h"
#include "model/model.h"

namespace qz {

struct TensorTypeOverride {
    std::string regex;  // searched in the GGUF tensor name; the first matching override wins
    DType type;
};

// --override-kv KEY=TYPE:VALUE (llama-quantize, core/gguf/README.md A.9): int -> UINT32, float -> FLOAT32,
// bool -> BOOL, str -> STRING; set after general.file_type (removed and re-appended, as gguf_set_val_*).
struct GgufKvOverride {
    std::string key;
    GgufValue value;
};
// Parses and validates one override: key 1..127 bytes and not general.alignment or split.*; int a whole
// number 0..4294967295; float a finite number; bool true/false; str at most 127 bytes.
Result<GgufKvOverride> parseGgufKvOverride(const std::string& spec);

// gguf-split's --split-max-size value (core/gguf/README.md A.8): a positive whole number followed by
// M (10^6 bytes) or G (10^9 bytes).
Result<uint64_t> parseGgufSplitSize(const std::string& text);

struct GgufExportParams {
    std::string outputPath;
    std::string type = "F16";              // F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S ... Q6_K
    std::string imatrixPath;               // optional (llama-imatrix GGUF or legacy .dat)
    std::vector<TensorTypeOverride> overrides;  // --tensor-type REGEX=TYPE
    std::optional<DType> outputTensorType;      // --output-tensor-type
    std::optional<DType> tokenEmbeddingType;    // --token-embedding-type
    bool pure = false;                     // --pure: no mix rules, only the default type (+ fallbacks)
    bool dryRun = false;                   // plan only: nothing is written
    int threads = 0;                       // 0 = all cores
    std::vector<GgufKvOverride> kvOverrides;    // --override-kv, in the order given
    // gguf-split output (core/gguf/README.md A.8): at most one of these non-zero. The files are named
    // PREFIX-00001-of-0000N.gguf, PREFIX = outputPath without ".gguf".
    uint64_t splitMaxBytes = 0;            // --split-max-size: tensor data per file
    int splitMaxTensors = 0;               // --split-max-tensors: tensors per file
};

struct GgufTensorLog {
    std::string name;                      // GGUF name
    std::string sourceName;                // the tensor's name in the input model
    std::vector<int64_t> ne;               // GGUF order
    DType from = DType::F32, to = DType::F32;
    uint64_t bytesBefore = 0, bytesAfter = 0;
    std::string reason;                    // why this type (mix rule, fallback, override, forced F32)
    bool quantizable = false;              // llama-quantize may quantize it (C.2 of core/ggml/README.md)
};

struct GgufExportResult {
    std::string path;                      // final file, the first part of a split (empty for a dry run)
    std::vector<std::string> paths;        // every file written (the parts of a split; planned for a dry run)
    std::vector<size_t> splitFirstTensor;  // split output: index into tensors of each part's first tensor
    std::string type;                      // the ftype name
    std::vector<GgufTensorLog> tensors;    // in file order
    uint64_t fileBytes = 0;                // whole file incl. header (for a dry run: estimated)
    uint64_t parameters = 0;
    double bitsPerWeight = 0;              // tensor data bits / parameters
    double seconds = 0;
    std::vector<std::string> notes;
};

// Names accepted for GgufExportParams::type.
std::vector<std::string> ggufExportTypes();

Result<GgufExportResult> exportGguf(const Model& model, const GgufExportParams& params, const ProgressFn& progress,
                                    const std::function<void(const GgufTensorLog&)>& onTensor = {});

// Visits the tensors of the GGUF file exportGguf would write, in its order (llama-quantize's), with their
// F32 values in the GGUF layout (rows of ne[0] values; a HF model converted as the export converts it).
// One tensor is held at a time. `names` (optional) restricts the visit to these GGUF names. The
// visitor's error stops the walk and is returned.
Status forEachGgufTensor(const Model& model, const std::vector<std::string>& names,
                         const std::function<Status(const std::string& name, const std::vector<int64_t>& ne,
                                                    const std::vector<float>& values)>& visit);

}  // namespace qz

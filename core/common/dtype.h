// Element/storage types of tensors, across safetensors and GGUF.
// Plain float/int dtypes come from safetensors; the block-quantized ones are ggml types
// (block of `blockSize` elements stored in `typeSize` bytes). Ids of ggml types follow ggml.h
// (core/gguf/README.md A.1).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qz {

enum class DType : uint16_t {
    // plain types
    F32, F16, BF16, F64, I8, U8, I16, U16, I32, U32, I64, U64, Bool, F8_E4M3, F8_E5M2,
    // ggml block types
    Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
    IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, IQ1_M, TQ1_0, TQ2_0, MXFP4,
    Count
};

struct DTypeTraits {
    std::string_view name;       // "F32", "BF16", "Q4_K", ...
    int32_t ggmlId;              // ggml_type id, or -1 if GGUF cannot hold it
    uint32_t blockSize;          // elements per block (1 for plain types)
    uint32_t typeSize;           // bytes per block
    bool isFloat;                // plain floating type (F32/F16/BF16/F64/F8)
    bool isQuantized;            // ggml block type
};

const DTypeTraits& traits(DType t);
inline std::string_view dtypeName(DType t) { return traits(t).name; }

// Bytes for n elements (n must be a multiple of the block size; returns nullopt otherwise or on overflow).
std::optional<uint64_t> bytesFor(DType t, uint64_t nElements);
// Bits per weight of the storage type itself (e.g. Q4_0 = 4.5).
double bitsPerWeight(DType t);

std::optional<DType> dtypeFromSafetensors(std::string_view s);  // "F32", "BF16", "F8_E4M3", ...
std::optional<DType> dtypeFromGgmlId(uint32_t id);
std::optional<DType> dtypeFromName(std::string_view name);       // case-insensitive "q4_0", "F16", ...

}  // namespace qz

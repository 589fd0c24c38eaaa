// llama-quantize's per-tensor type selection ("mixes" such as Q4_K_M), as pure functions (README.md C).
//
// Given the model's hyper-parameters, the list of tensors and the user's options, chooseTensorTypes
// returns, for every tensor, the storage type llama-quantize (upstream, late 2025/2026: "LCnew") would
// write, plus a human-readable reason. The logic follows llama-quant.cpp:
//  1. tensor_allows_quantization: only names ending in "weight", >= 2 dims, no "_norm.weight", not
//     position/token-type embeddings, expert gates, small conv/RWKV/multimodal tensors (C.2);
//  2. --token-embedding-type / --output-tensor-type return at once; then the first --tensor-type regex
//     that matches (std::regex_search, ECMAScript) wins; else, unless --pure, the mix rules (C.4) run,
//     their counters (i_attention_wv, i_ffn_down, ...) in sorted tensor order (core/gguf/README.md A.7);
//  3. the ne[0] fallback (C.5, LCnew: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
//     IQ* -> IQ4_NL, then F16 if still not divisible).
// QuantZoo extension: where llama-quantize stops with "no tensor type fallback is defined" (e.g. Q8_0 on
// rows of 172), we use F16 and set `beyondLlamaCpp` (disable with MixOptions::strictLlamaCpp).
//
// Tensor order: llama-quantize writes tensors in std::map order with weight_name_comparer — layer
// number from "blk.%d." (-1 for non-block tensors) first, then plain string order (llamaTensorLess).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "common/result.h"

namespace qz::ggml {

// LLAMA_FTYPE values (= general.file_type), README.md C.1.
enum class FileType : int32_t {
    ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q4_1 = 3, MOSTLY_Q8_0 = 7, MOSTLY_Q5_0 = 8,
    MOSTLY_Q5_1 = 9, MOSTLY_Q2_K = 10, MOSTLY_Q3_K_S = 11, MOSTLY_Q3_K_M = 12, MOSTLY_Q3_K_L = 13,
    MOSTLY_Q4_K_S = 14, MOSTLY_Q4_K_M = 15, MOSTLY_Q5_K_S = 16, MOSTLY_Q5_K_M = 17, MOSTLY_Q6_K = 18,
    MOSTLY_IQ2_XXS = 19, MOSTLY_IQ2_XS = 20, MOSTLY_Q2_K_S = 21, MOSTLY_IQ3_XS = 22, MOSTLY_IQ3_XXS = 23,
    MOSTLY_IQ1_S = 24, MOSTLY_IQ4_NL = 25, MOSTLY_IQ3_S = 26, MOSTLY_IQ3_M = 27, MOSTLY_IQ2_S = 28,
    MOSTLY_IQ2_M = 29, MOSTLY_IQ4_XS = 30, MOSTLY_IQ1_M = 31, MOSTLY_BF16 = 32, MOSTLY_TQ1_0 = 36,
    MOSTLY_TQ2_0 = 37, MOSTLY_MXFP4_MOE = 38,
};

struct FileTypeInfo {
    FileType ftype;
    std::string_view name;  // llama-quantize's CLI name: "Q4_K_M", "Q8_0", "F16", ...
    DType defaultType;      // llama_ftype_get_default_type
};

// All file types we know, in llama-quantize's listing order.
std::span<const FileTypeInfo> fileTypes();
const FileTypeInfo* fileTypeInfo(FileType t);
// Case-insensitive CLI name, the aliases "Q4_K" (= Q4_K_M), "Q3_K" (= Q3_K_M), "Q5_K" (= Q5_K_M), or the
// number ("15").
std::optional<FileType> fileTypeFromName(std::string_view name);

// Model facts the rules need (from the GGUF KVs / HF config).
struct MixModelInfo {
    std::string arch = "llama";  // general.architecture: "llama", "gpt2", "falcon", ...
    int nLayer = 0;              // {arch}.block_count
    int nHead = 0;               // {arch}.attention.head_count
    int nHeadKv = 0;             // {arch}.attention.head_count_kv (0 or absent -> = nHead)
    int nExpert = 0;             // {arch}.expert_count (0 = dense)
};

struct MixTensor {
    std::string name;         // GGUF name
    std::vector<int64_t> ne;  // GGUF order (ne[0] = row length)
    DType type = DType::F32;  // current storage type
};

struct MixOptions {
    FileType ftype = FileType::MOSTLY_Q4_K_M;
    bool hasImatrix = false;            // some rules depend on it (Q4_0/Q5_0 ffn_down, IQ3_XXS, IQ4_*)
    bool pure = false;                  // --pure: default type everywhere (the fallback still applies)
    bool leaveOutputTensor = false;     // --leave-output-tensor
    std::optional<DType> outputTensorType;    // --output-tensor-type
    std::optional<DType> tokenEmbeddingType;  // --token-embedding-type
    // --tensor-type REGEX=TYPE, in command-line order; the first regex found in the name wins.
    std::vector<std::pair<std::string, DType>> tensorTypes;
    bool strictLlamaCpp = false;        // true: fail where llama-quantize fails instead of using F16
};

struct MixChoice {
    DType type = DType::F32;   // storage type to write
    bool quantize = false;     // false: bytes copied unchanged (type equals the current type)
    bool fallback = false;     // the C.5 fallback changed the type (ne[0] not divisible)
    bool beyondLlamaCpp = false;  // llama-quantize would refuse this tensor; QuantZoo chose F16
    bool requiresImatrix = false; // llama-quantize requires an imatrix for this target (IQ1/IQ2/IQ3_XXS...)
    bool allowed = true;       // tensor_allows_quantization (C.2); false: kept as it is, no rule applies
    std::string reason;        // for the UI: "attn_v: use_more_bits(2 of 4) -> Q6_K"
};

// Chooses the type of every tensor. `tensors` must be in llama-quantize's order (sortLlamaOrder);
// the result is parallel to it. Errors: bad regex, MoE tensor without a layer number, a required
// fallback that llama-quantize does not have while strictLlamaCpp is set.
Result<std::vector<MixChoice>> chooseTensorTypes(const MixModelInfo& model, const std::vector<MixTensor>& tensors,
                                                 const MixOptions& options);

// weight_name_comparer: true if a sorts before b.
bool llamaTensorLess(const std::string& a, const std::string& b);
// Sorts tensors into llama-quantize's output order (stable for equal names, which a model cannot have).
void sortLlamaOrder(std::vector<MixTensor>& tensors);
// Permutation: result[k] = index into names of the k-th tensor in llama-quantize order.
std::vector<size_t> llamaOrder(const std::vector<std::string>& names);

// use_more_bits(i, n) of llama-quant.cpp (integer division).
bool useMoreBits(int i, int n);

}  // namespace qz::ggml

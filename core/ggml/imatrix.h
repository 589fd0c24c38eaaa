// Importance matrix ("imatrix") files of llama-imatrix, as llama-quantize reads them (README.md B.6).
//
// Two formats, detected by the "GGUF" magic:
//  * GGUF (current llama-imatrix): KVs general.type = "imatrix", imatrix.datasets (string array),
//    imatrix.chunk_count, imatrix.chunk_size (u32); per weight tensor W two F32 tensors
//    "W.in_sum2" (ne = [ne0] or [ne0, n_mat]: sum of squared activations per input column) and
//    "W.counts" (ne = [1] or [1, n_mat]: tokens seen, stored as float, rounded with lround), plus an
//    optional "W.in_sum". Importance per column = in_sum2 / (float)count of its matrix; a count of 0
//    gives 1.0 for that matrix. A GGUF without the three imatrix.* KVs is refused, as llama-quantize does.
//  * legacy .dat: i32 n_entries (>= 1); per entry i32 name_len, name bytes, i32 ncall, i32 nval (>= 1),
//    f32 values[nval]; then optionally i32 chunk_count, i32 dataset_len, dataset bytes. Importance =
//    values / (float)ncall (values kept as they are when ncall <= 0).
//
// The result maps the weight tensor's GGUF name ("blk.0.ffn_down.weight") to ne0 * n_mat importance
// values (expert e's columns at e * ne0), ready to pass to the quantizers (ggml/kquants.h).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace qz::ggml {

struct Imatrix {
    std::map<std::string, std::vector<float>> values;  // tensor name -> importance per column
    std::vector<std::string> datasets;
    int64_t chunkCount = 0;
    int64_t chunkSize = 0;  // 0 for legacy files
    bool legacy = false;

    // Importance for a tensor with ne0 columns and ne2 matrices (experts), as llama-quantize looks it up:
    // nullptr when the file has no entry (the tensor is then quantized without imatrix); an Error when
    // the entry's size is not ne0*ne2, except for token_embd.weight, which then gets nullptr.
    Result<const float*> lookup(const std::string& tensorName, int64_t ne0, int64_t ne2 = 1) const;
};

// Reads a whole imatrix file (GGUF or legacy). Errors name the file and the problem.
Result<Imatrix> loadImatrix(const std::string& path);
// Same on bytes already in memory; `fileName` is used in messages only.
Result<Imatrix> parseImatrix(std::span<const uint8_t> bytes, const std::string& fileName);

}  // namespace qz::ggml

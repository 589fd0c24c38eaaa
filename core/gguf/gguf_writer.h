// Streaming GGUF v3 writer (README.md A.1, A.2, A.7).
//
// Usage:
//   GgufWriter w(outPath);                        // nothing touches the disk yet
//   w.setKv("general.architecture", GgufValue::string("llama"));   // typed, in order
//   w.setKv("llama.block_count", GgufValue::u32(32));              // counts/ids: UINT32 (A.2)
//   w.addTensor("token_embd.weight", {4096, 32000}, DType::Q4_K);  // ne in ggml order (ne[0] innermost)
//   ...
//   if (auto s = w.begin(); !s) ...              // locks <out>, writes header, KVs and tensor infos to a
//                                                // unique temporary file beside it (common/safe_file.h)
//   for each tensor, in the order declared:
//       w.writeTensorData(bytes);                // whole tensor, or in consecutive pieces
//   w.finish();                                  // checks completeness, flushes, renames to outPath
// Any error, abort() or destroying an unfinished writer removes the temporary file; the
// destination is only replaced by a complete file.
//
// Layout written: offsets are assigned in declaration order, each tensor's data zero-padded to the
// alignment (general.alignment if set as a UINT32 power of two, else 32), the data section starts
// at the padded end of the tensor infos — exactly llama.cpp's contiguity rule, so
// GgufFile::checkLlamaLayout() passes on every file this writer produces.
//
// n_dims: DimsConvention::C (ggml's gguf writer, used by llama-quantize) drops trailing dimensions
// of size 1 (at least 1 is kept); DimsConvention::Python (gguf-py, used by convert_hf_to_gguf for
// the F32/F16/BF16 files) writes ne exactly as given. A Python-convention file without tensors
// ends right after its key/values (no padding), as gguf-py's vocab-only files do.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/result.h"
#include "common/safe_file.h"
#include "gguf/gguf_file.h"

namespace qz {

class GgufWriter {
public:
    enum class DimsConvention { C, Python };

    explicit GgufWriter(std::string path, DimsConvention dims = DimsConvention::C);
    ~GgufWriter();
    GgufWriter(const GgufWriter&) = delete;
    GgufWriter& operator=(const GgufWriter&) = delete;

    // ---- declaration phase (before begin())
    // Appends a key/value; fails on an empty or duplicate key, an array of arrays, or a
    // general.alignment that is not a UINT32 power of two.
    Status setKv(const std::string& key, GgufValue value);
    // gguf_set_* semantics: removes the key if present, then appends it (llama-quantize uses this,
    // which is why general.quantization_version and general.file_type end up last).
    Status replaceKv(const std::string& key, GgufValue value);
    Status removeKv(const std::string& key);  // ok even if absent
    const std::vector<GgufKV>& kvs() const { return m_kvs; }

    // Declares the next tensor. ne in ggml order. Fails on a name that is empty, 64 bytes or
    // longer or already declared, more than 4 dims, a negative dim, a type GGUF cannot hold, or
    // ne[0] not a multiple of the type's block size.
    Status addTensor(const std::string& name, const std::vector<int64_t>& ne, DType type);

    // ---- writing phase
    Status begin();
    // Appends bytes to the current tensor (the first declared one not yet complete). A tensor may
    // be supplied in several pieces; when it is complete its padding is written.
    Status writeTensorData(std::span<const uint8_t> bytes);
    // Two-phase end for a set of files that must appear together (the parts of a split model):
    // close() checks completeness, flushes, fsyncs and closes the temporary file without touching
    // the destination; finish() afterwards only renames. finish() alone does both.
    Status close();
    Status finish();
    void abort();

    // Layout, valid after begin(): absolute data-section offset; per-tensor relative offsets.
    uint64_t dataOffset() const { return m_dataOffset; }
    uint32_t alignment() const { return m_alignment; }
    const std::vector<GgufTensor>& tensors() const { return m_tensors; }
    size_t currentTensor() const { return m_current; }  // index of the tensor expecting data
    const std::string& path() const { return m_path; }
    const std::string& tempPath() const { return m_tmpPath; }  // valid after begin()

private:
    Status fail(const std::string& what);
    Status failed(Status s);
    Status writeBytes(const void* p, size_t n);
    Status padCurrent();

    std::string m_path, m_tmpPath;
    DimsConvention m_dims;
    std::vector<GgufKV> m_kvs;
    std::vector<GgufTensor> m_tensors;   // offset = relative data offset once begin() ran
    uint32_t m_alignment = kGgufDefaultAlignment;
    uint64_t m_dataOffset = 0;
    OutputFile m_out;
    enum class State { Declaring, Writing, Closed, Finished, Failed } m_state = State::Declaring;
    size_t m_current = 0;        // tensor receiving data
    uint64_t m_written = 0;      // bytes of it written so far
};

}  // namespace qz

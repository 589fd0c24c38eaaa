// Streaming safetensors writer (README.md F.1) and sharded Hugging Face set writer (F.2).
//
// The caller declares every tensor (name, dtype, shape) and the "__metadata__" up front; the header is
// then fixed: compact JSON, "__metadata__" first (always with "format": "pt", which transformers needs),
// tensors in declared order with consecutive data_offsets, padded with spaces to a multiple of 8 bytes so
// the data starts 8-aligned. The caller then writes each tensor's bytes in declared order, whole or in
// chunks, so only one tensor (or one chunk) is ever in memory.
//
// Files are written to a hidden temporary name in the destination folder (".<name>.tmp.<pid>.<n>") and
// renamed onto the final name by finish(). abort(), any write error, or destroying an unfinished writer
// removes the temporary; nothing ever appears under the final name unless the file is complete.
//
// ShardedSafetensorsWriter splits the declared tensors greedily, in order, into shards of at most
// maxShardBytes of tensor data (a single tensor larger than that gets a shard of its own), named
// model-00001-of-0000N.safetensors, plus model.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {tensor: shard}}, sorted keys, indent 2, as
// huggingface_hub/GPTQModel write it). One shard is written as model.safetensors without an index unless
// alwaysIndex is set. All shards stay temporaries until finish() renames them, the index last.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/result.h"
#include "common/safe_file.h"
#include "model/model.h"

namespace qz {

struct SafetensorsTensorDecl {
    std::string name;
    DType dtype = DType::F32;   // plain dtypes only (safetensors cannot hold ggml block types)
    std::vector<int64_t> shape; // outermost first
};

class SafetensorsWriter {
  public:
    SafetensorsWriter() = default;
    ~SafetensorsWriter(); // removes the temporary unless finish() succeeded
    SafetensorsWriter(const SafetensorsWriter&) = delete;
    SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

    // Validates the declarations (unique non-empty names, plain dtypes, non-negative shapes, no overflow),
    // creates the temporary file and writes the header. A "format": "pt" entry is added to the metadata
    // if it has none.
    Status open(const std::string& path, std::vector<SafetensorsTensorDecl> tensors,
                std::vector<MetaItem> metadata = {});

    // The next tensor's bytes, all of them (size must equal the declared byte size).
    Status writeTensor(std::span<const uint8_t> bytes);
    // Part of the next tensor's bytes; the tensor is complete once its declared size has been written.
    Status writeChunk(std::span<const uint8_t> bytes);
    // The next tensor from F32 values (all of them), converted to its declared dtype (F32, F16 or BF16,
    // round to nearest even) in small pieces.
    Status writeTensorFromF32(std::span<const float> values);
    // Part of the next tensor from F32 values (converted as above); like writeChunk.
    Status writeChunkFromF32(std::span<const float> values);

    // Kept for callers of the older API: every output file is now fsynced before its rename (and the
    // folder after it), see common/safe_file.h, so a power loss never leaves a truncated file under the
    // final name.
    void setDurable(bool on) { m_durable = on; }

    // Completes the temporary file (every tensor written, flushed, closed) without renaming it.
    Status close();
    // Renames the completed temporary onto the final path.
    Status commit();
    // close() + commit().
    Status finish();
    // Removes the temporary (and leaves the final path untouched). Safe to call at any time.
    void abort();

    const std::string& path() const { return m_path; }
    const std::string& tempPath() const { return m_tempPath; }
    size_t tensorCount() const { return m_tensors.size(); }
    size_t nextTensor() const { return m_next; } // index of the tensor expected next
    uint64_t dataBytes() const { return m_dataBytes; }
    uint64_t fileSize() const { return m_headerBytes + m_dataBytes; } // 8 + padded header + data

  private:
    Status fail(std::string message);
    Status writeRaw(const uint8_t* p, size_t n);

    enum class State { Idle, Writing, Closed, Committed, Failed };
    State m_state = State::Idle;
    std::string m_path, m_tempPath;
    OutputFile m_out;
    std::vector<SafetensorsTensorDecl> m_tensors;
    std::vector<uint64_t> m_sizes; // declared bytes per tensor
    size_t m_next = 0;             // tensor being written
    uint64_t m_doneInTensor = 0;   // bytes of it written so far
    uint64_t m_headerBytes = 0, m_dataBytes = 0;
    bool m_durable = false;
};

struct ShardedWriteOptions {
    uint64_t maxShardBytes = 5'000'000'000; // huggingface_hub default "5GB" (decimal)
    std::vector<MetaItem> metadata;         // every shard's "__metadata__" ("format": "pt" added)
    bool alwaysIndex = false;               // write shards + index even when one shard suffices
    bool durable = false;                   // no effect: files are always fsynced (see setDurable)
};

class ShardedSafetensorsWriter {
  public:
    ShardedSafetensorsWriter() = default;
    ~ShardedSafetensorsWriter(); // aborts unless finished
    ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
    ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

    // Plans the shards and opens the first one. `dir` is created if missing (and removed again by abort()
    // if it is still empty).
    Status open(const std::string& dir, std::vector<SafetensorsTensorDecl> tensors,
                ShardedWriteOptions options = {});
    Status writeTensor(std::span<const uint8_t> bytes);
    Status writeChunk(std::span<const uint8_t> bytes);
    Status writeTensorFromF32(std::span<const float> values);
    Status writeChunkFromF32(std::span<const float> values);
    // Completes every shard, renames them onto their final names, then writes the index (if any).
    Status finish();
    // Removes every temporary (and any shard already renamed by a finish() that failed later).
    void abort();

    // Final file names (relative to dir), in shard order; known after open().
    const std::vector<std::string>& shardNames() const { return m_shardNames; }
    uint64_t totalBytes() const { return m_totalBytes; }

  private:
    Status ensureShardOpen();
    Status afterWrite();
    template <class F> Status forward(F&& f);

    std::string m_dir;
    ShardedWriteOptions m_options;
    std::vector<SafetensorsTensorDecl> m_tensors;
    std::vector<size_t> m_shardOf; // per tensor
    std::vector<std::string> m_shardNames;
    std::vector<std::unique_ptr<SafetensorsWriter>> m_writers;
    std::vector<std::string> m_committed; // final paths already renamed (removed by abort)
    size_t m_next = 0;                    // next tensor
    uint64_t m_totalBytes = 0;
    bool m_open = false, m_finished = false;
    bool m_createdDir = false; // open() created m_dir (abort removes it if empty)
};

} // namespace qz

#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "common/fp16.h"
#include "io/safetensors.h"

namespace qz {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

bool isPlain(DType t) {
    return static_cast<size_t>(t) <= static_cast<size_t>(DType::F8_E5M2);
}

// Declared byte size of a tensor, or an error.
Result<uint64_t> declaredBytes(const SafetensorsTensorDecl& d) {
    uint64_t numel = 1;
    bool zero = false;
    for (int64_t dim : d.shape) {
        if (dim < 0) return makeError("tensor '" + d.name + "' has a negative dimension");
        if (dim == 0) {
            zero = true;
            continue;
        }
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel) ||
            numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            return makeError("tensor '" + d.name + "': the product of its shape overflows");
    }
    auto b = bytesFor(d.dtype, zero ? 0 : numel);
    if (!b) return makeError("tensor '" + d.name + "': byte size overflows");
    return *b;
}

// Checks every declaration (names, dtypes, shapes) and returns the byte sizes.
Result<std::vector<uint64_t>> validateDecls(const std::vector<SafetensorsTensorDecl>& tensors,
                                            const std::string& where) {
    std::set<std::string> names;
    std::vector<uint64_t> sizes;
    sizes.reserve(tensors.size());
    for (const auto& t : tensors) {
        if (t.name.empty() || t.name == "__metadata__")
            return makeError(where + ": invalid tensor name '" + t.name + "'");
        if (!names.insert(t.name).second)
            return makeError(where + ": duplicate tensor name '" + t.name + "'");
        if (!isPlain(t.dtype))
            return makeError(where + ": tensor '" + t.name + "' has dtype " +
                             std::string(dtypeName(t.dtype)) + ", which safetensors cannot hold");
        auto bytes = declaredBytes(t);
        if (!bytes) return makeError(where + ": " + bytes.error().message);
        sizes.push_back(*bytes);
    }
    return sizes;
}

} // namespace

// ---------------------------------------------------------------------------------------------------------
// SafetensorsWriter

SafetensorsWriter::~SafetensorsWriter() {
    abort();
}

Status SafetensorsWriter::fail(std::string message) {
    abort();
    m_state = State::Failed;
    return makeError(std::move(message));
}

Status SafetensorsWriter::open(const std::string& path, std::vector<SafetensorsTensorDecl> tensors,
                               std::vector<MetaItem> metadata) {
    if (m_state != State::Idle) return makeError(path + ": writer already used");
    const std::string fname = fs::path(path).filename().string();
    if (fname.empty()) return makeError(path + ": not a file path");

    auto checked = validateDecls(tensors, fname);
    if (!checked) return checked.error();
    std::vector<uint64_t> sizes = std::move(*checked);
    uint64_t offset = 0;
    ojson header = ojson::object();
    bool hasFormat = false;
    for (const auto& m : metadata)
        hasFormat |= m.key == "format";
    ojson meta = ojson::object();
    if (!hasFormat) meta["format"] = "pt";
    for (const auto& m : metadata)
        meta[m.key] = m.value;
    header["__metadata__"] = std::move(meta);
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& t = tensors[i];
        uint64_t end = 0;
        if (__builtin_add_overflow(offset, sizes[i], &end))
            return makeError(fname + ": total size overflows");
        ojson e = ojson::object();
        e["dtype"] = std::string(dtypeName(t.dtype));
        e["shape"] = t.shape;
        e["data_offsets"] = {offset, end};
        header[t.name] = std::move(e);
        offset = end;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const std::exception& e) {
        return makeError(fname + ": cannot encode the header (tensor names must be UTF-8): " + e.what());
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    if (text.size() > kSafetensorsMaxHeader)
        return makeError(fname + ": header of " + std::to_string(text.size()) + " bytes is too large");

    m_path = path;
    if (auto st = m_out.open(path); !st) {
        m_state = State::Failed;
        return st;
    }
    m_tempPath = m_out.tempPath();
    m_state = State::Writing;
    m_tensors = std::move(tensors);
    m_sizes = std::move(sizes);
    m_next = 0;
    m_doneInTensor = 0;
    m_headerBytes = 8 + text.size();
    m_dataBytes = offset;

    uint8_t len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i)
        len[i] = static_cast<uint8_t>(n >> (8 * i));
    if (auto st = writeRaw(len, 8); !st) return st;
    return writeRaw(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

Status SafetensorsWriter::writeRaw(const uint8_t* p, size_t n) {
    if (auto st = m_out.write(p, n); !st) return fail(st.error().message);  // names the file and errno
    return okStatus();
}

Status SafetensorsWriter::writeChunk(std::span<const uint8_t> bytes) {
    if (m_state != State::Writing) return makeError(m_path + ": writer is not open");
    if (m_next >= m_tensors.size())
        return fail(m_path + ": all " + std::to_string(m_tensors.size()) +
                    " declared tensors are already written");
    const auto& t = m_tensors[m_next];
    const uint64_t remaining = m_sizes[m_next] - m_doneInTensor;
    if (bytes.size() > remaining)
        return fail(m_path + ": tensor '" + t.name + "': " + std::to_string(m_doneInTensor + bytes.size()) +
                    " bytes written, " + std::to_string(m_sizes[m_next]) + " declared");
    if (auto st = writeRaw(bytes.data(), bytes.size()); !st) return st;
    m_doneInTensor += bytes.size();
    if (m_doneInTensor == m_sizes[m_next]) {
        ++m_next;
        m_doneInTensor = 0;
    }
    return okStatus();
}

Status SafetensorsWriter::writeTensor(std::span<const uint8_t> bytes) {
    if (m_state != State::Writing) return makeError(m_path + ": writer is not open");
    if (m_next < m_tensors.size() && (m_doneInTensor != 0 || bytes.size() != m_sizes[m_next]))
        return fail(m_path + ": tensor '" + m_tensors[m_next].name + "': " + std::to_string(bytes.size()) +
                    " bytes given, " + std::to_string(m_sizes[m_next]) + " declared");
    return writeChunk(bytes);
}

Status SafetensorsWriter::writeTensorFromF32(std::span<const float> values) {
    if (m_state != State::Writing) return makeError(m_path + ": writer is not open");
    if (m_next >= m_tensors.size()) return writeChunk({}); // reports "already written"
    const auto& t = m_tensors[m_next];
    const uint64_t elemBytes = traits(t.dtype).typeSize;
    if (m_doneInTensor != 0 || values.size() * elemBytes != m_sizes[m_next])
        return fail(m_path + ": tensor '" + t.name + "': " + std::to_string(values.size()) +
                    " values given, " + std::to_string(m_sizes[m_next] / elemBytes) + " declared");
    return writeChunkFromF32(values);
}

Status SafetensorsWriter::writeChunkFromF32(std::span<const float> values) {
    if (m_state != State::Writing) return makeError(m_path + ": writer is not open");
    if (m_next >= m_tensors.size()) return writeChunk({}); // reports "already written"
    const auto& t = m_tensors[m_next];
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
        return fail(m_path + ": tensor '" + t.name + "': cannot write F32 values as " +
                    std::string(dtypeName(t.dtype)));
    if (values.size() * traits(t.dtype).typeSize > m_sizes[m_next] - m_doneInTensor)
        return fail(m_path + ": tensor '" + t.name + "': " + std::to_string(values.size()) +
                    " values are more than the rest of the tensor");
    if (values.empty()) return writeChunk({});
    if (t.dtype == DType::F32)
        return writeChunk({reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4});
    constexpr size_t kPiece = 32768;
    uint16_t buf[kPiece];
    const bool bf16 = t.dtype == DType::BF16;
    for (size_t i = 0; i < values.size(); i += kPiece) {
        const size_t n = std::min(kPiece, values.size() - i);
        if (bf16)
            for (size_t k = 0; k < n; ++k)
                buf[k] = fp32ToBf16(values[i + k]);
        else
            for (size_t k = 0; k < n; ++k)
                buf[k] = fp32ToFp16(values[i + k]);
        // little-endian host assumed throughout (as mmap readers do)
        if (auto st = writeChunk({reinterpret_cast<const uint8_t*>(buf), n * 2}); !st) return st;
    }
    return okStatus();
}

Status SafetensorsWriter::close() {
    if (m_state == State::Closed) return okStatus();
    if (m_state != State::Writing) return makeError(m_path + ": writer is not open");
    if (m_next < m_tensors.size())
        return fail(m_path + ": only " + std::to_string(m_next) + " of " + std::to_string(m_tensors.size()) +
                    " tensors written (next: '" + m_tensors[m_next].name + "')");
    if (auto st = m_out.close(); !st) return fail(st.error().message);  // flushed and fsynced
    m_state = State::Closed;
    return okStatus();
}

Status SafetensorsWriter::commit() {
    if (m_state != State::Closed) return makeError(m_path + ": commit() before close()");
    if (auto st = m_out.commit(); !st) return fail(st.error().message);
    m_state = State::Committed;
    return okStatus();
}

Status SafetensorsWriter::finish() {
    if (auto st = close(); !st) return st;
    return commit();
}

void SafetensorsWriter::abort() {
    if (m_state != State::Committed) {
        m_out.abort();
        m_tempPath.clear();
    }
    if (m_state == State::Writing || m_state == State::Closed) m_state = State::Failed;
}

// ---------------------------------------------------------------------------------------------------------
// ShardedSafetensorsWriter

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() {
    if (!m_finished) abort();
}

Status ShardedSafetensorsWriter::open(const std::string& dir, std::vector<SafetensorsTensorDecl> tensors,
                                      ShardedWriteOptions options) {
    if (m_open || m_finished) return makeError(dir + ": writer already used");
    if (options.maxShardBytes == 0) return makeError(dir + ": maxShardBytes must be positive");
    m_dir = dir;
    auto checked = validateDecls(tensors, dir); // across shards: a name used twice is an error too
    if (!checked) return checked.error();
    std::error_code ec;
    m_createdDir = fs::create_directories(dir, ec);
    if (!fs::is_directory(dir, ec)) return makeError(dir + ": cannot create the folder");
    const std::vector<uint64_t>& sizes = *checked;

    // Greedy split in declared order.
    std::vector<size_t> shardOf(tensors.size());
    size_t shard = 0;
    uint64_t inShard = 0, total = 0;
    bool shardEmpty = true;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const uint64_t b = sizes[i];
        if (!shardEmpty && (inShard >= options.maxShardBytes || b > options.maxShardBytes - inShard)) {
            ++shard;
            inShard = 0;
            shardEmpty = true;
        }
        shardOf[i] = shard;
        inShard += b; // a single tensor above the limit may exceed it: it is alone in its shard
        shardEmpty = false;
        if (__builtin_add_overflow(total, b, &total)) return makeError(dir + ": total size overflows");
    }
    const size_t nShards = shard + 1;
    m_shardNames.clear();
    if (nShards == 1 && !options.alwaysIndex) {
        m_shardNames.push_back("model.safetensors");
    } else {
        char buf[64];
        for (size_t s = 0; s < nShards; ++s) {
            std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, nShards);
            m_shardNames.push_back(buf);
        }
    }
    m_options = std::move(options);
    m_tensors = std::move(tensors);
    m_shardOf = std::move(shardOf);
    m_writers.clear();
    m_writers.resize(nShards);
    m_totalBytes = total;
    m_next = 0;
    m_open = true;
    // Open the first shard now so that declaration errors surface here; empty trailing shards too.
    return ensureShardOpen();
}

Status ShardedSafetensorsWriter::ensureShardOpen() {
    const size_t s = m_next < m_tensors.size() ? m_shardOf[m_next] : m_writers.size() - 1;
    if (m_writers[s]) return okStatus();
    std::vector<SafetensorsTensorDecl> decls;
    for (size_t i = 0; i < m_tensors.size(); ++i)
        if (m_shardOf[i] == s) decls.push_back(m_tensors[i]);
    auto w = std::make_unique<SafetensorsWriter>();
    w->setDurable(m_options.durable);
    auto st = w->open((fs::path(m_dir) / m_shardNames[s]).string(), std::move(decls), m_options.metadata);
    m_writers[s] = std::move(w);
    if (!st) {
        abort();
        return st;
    }
    return okStatus();
}

template <class F> Status ShardedSafetensorsWriter::forward(F&& f) {
    if (!m_open || m_finished) return makeError(m_dir + ": writer is not open");
    if (m_next >= m_tensors.size()) return makeError(m_dir + ": all declared tensors are already written");
    if (auto st = ensureShardOpen(); !st) return st;
    const size_t s = m_shardOf[m_next];
    SafetensorsWriter& w = *m_writers[s];
    const size_t before = w.nextTensor();
    if (auto st = f(w); !st) {
        abort();
        return st;
    }
    m_next += w.nextTensor() - before;
    if (w.nextTensor() == w.tensorCount()) {
        if (auto st = w.close(); !st) {
            abort();
            return st;
        }
    }
    return okStatus();
}

Status ShardedSafetensorsWriter::writeTensor(std::span<const uint8_t> bytes) {
    return forward([&](SafetensorsWriter& w) { return w.writeTensor(bytes); });
}
Status ShardedSafetensorsWriter::writeChunk(std::span<const uint8_t> bytes) {
    return forward([&](SafetensorsWriter& w) { return w.writeChunk(bytes); });
}
Status ShardedSafetensorsWriter::writeTensorFromF32(std::span<const float> values) {
    return forward([&](SafetensorsWriter& w) { return w.writeTensorFromF32(values); });
}
Status ShardedSafetensorsWriter::writeChunkFromF32(std::span<const float> values) {
    return forward([&](SafetensorsWriter& w) { return w.writeChunkFromF32(values); });
}

Status ShardedSafetensorsWriter::finish() {
    if (!m_open || m_finished) return makeError(m_dir + ": writer is not open");
    if (m_next < m_tensors.size()) {
        const std::string msg = m_dir + ": only " + std::to_string(m_next) + " of " +
                                std::to_string(m_tensors.size()) + " tensors written";
        abort();
        return makeError(msg);
    }
    if (auto st = ensureShardOpen(); !st) return st; // a model without tensors still gets its file
    for (auto& w : m_writers)
        if (auto st = w->close(); !st) {
            abort();
            return st;
        }

    // The index is prepared before any rename so that an encoding problem leaves nothing behind.
    std::string indexText;
    if (m_shardNames.size() > 1 || m_options.alwaysIndex) {
        nlohmann::json index; // std::map keys: sorted like json.dumps(sort_keys=True)
        index["metadata"]["total_size"] = m_totalBytes;
        index["weight_map"] = nlohmann::json::object();
        for (size_t i = 0; i < m_tensors.size(); ++i)
            index["weight_map"][m_tensors[i].name] = m_shardNames[m_shardOf[i]];
        try {
            indexText = index.dump(2) + "\n";
        } catch (const std::exception& e) {
            abort();
            return makeError(m_dir + ": cannot encode the index: " + e.what());
        }
    }
    for (auto& w : m_writers) {
        if (auto st = w->commit(); !st) {
            abort();
            return st;
        }
        m_committed.push_back(w->path());
    }
    if (!indexText.empty()) {
        const std::string path = (fs::path(m_dir) / "model.safetensors.index.json").string();
        if (auto st = writeFileAtomic(path, indexText); !st) {
            abort();
            return makeError("cannot write the index: " + st.error().message);
        }
    }
    m_finished = true;
    m_open = false;
    return okStatus();
}

void ShardedSafetensorsWriter::abort() {
    if (m_finished) return; // a complete set is the caller's now
    for (auto& w : m_writers)
        if (w) w->abort();
    for (const auto& p : m_committed)
        ::unlink(p.c_str());
    m_committed.clear();
    if (m_createdDir) { // a folder this writer created goes too, if nothing else was put in it
        std::error_code ec;
        fs::remove(m_dir, ec);
        m_createdDir = false;
    }
    m_open = false;
}

} // namespace qz

// A parsed GGUF file (README.md A.1): header, ordered typed key/values, tensor infos, alignment and
// the start of the data section, over a memory-mapped file.
//
// Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv; n_kv x {string key, u32 type,
// value}; n_tensors x {string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset};
// zero padding to the alignment (general.alignment, default 32); tensor data. A string is u64
// length + bytes; an array value is u32 element type + u64 count + elements (no arrays of arrays).
//
// Parsing treats the file as hostile: every length, count, offset, dimension and type is checked
// before use, nothing is allocated from an unchecked count, and every error names the file and the
// problem. Accepted: versions 2 and 3, non-empty unique keys, general.alignment a UINT32 power of
// two, unique tensor names shorter than 64 bytes, n_dims <= 4, dimensions >= 0 whose product fits
// in int64, known ggml types with ne[0] a multiple of the block size, tensor data aligned, inside
// the file and not overlapping. llama.cpp is stricter about offsets (they must be exactly
// contiguous in tensor-info order): checkLlamaLayout() reports that rule for files we write.
//
// Typical use (exporter / inference):
//   auto f = GgufFile::open(path);                 // Result<std::shared_ptr<const GgufFile>>
//   auto arch = (*f)->getString("general.architecture");
//   if (const GgufValue* v = (*f)->find("tokenizer.ggml.tokens")) v->stringAt(0);
//   for (const GgufTensor& t : (*f)->tensors) (*f)->tensorBytes(t);
// From a Model opened by openGgufModel: ggufOf(model) (gguf/gguf_reader.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/dtype.h"
#include "common/mapped_file.h"
#include "common/result.h"

namespace qz {

enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
    U64 = 10, I64 = 11, F64 = 12,
};
constexpr uint32_t kGgufTypeCount = 13;
constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr size_t kGgufMaxNameBytes = 63;  // GGML_MAX_NAME - 1
constexpr uint32_t kGgufMaxDims = 4;

std::string_view ggufTypeName(GgufType t);  // "UINT32", "STRING", ...
// Size in bytes of one scalar of type t; 0 for String and Array.
size_t ggufScalarSize(GgufType t);

// A typed metadata value. Scalars keep their raw little-endian bits in `bits` (zero-extended);
// numeric and bool arrays keep their packed element bytes in `data`, string arrays `strings`.
struct GgufValue {
    GgufType type = GgufType::U32;
    GgufType elemType = GgufType::U8;  // arrays only
    uint64_t bits = 0;                 // numeric / bool scalars
    std::string str;                   // String
    std::vector<uint8_t> data;         // numeric / bool arrays (count * ggufScalarSize(elemType) bytes)
    std::vector<std::string> strings;  // String arrays
    uint64_t count = 0;                // arrays: number of elements

    // Factories with the exact GGUF types.
    static GgufValue u8(uint8_t v);
    static GgufValue i8(int8_t v);
    static GgufValue u16(uint16_t v);
    static GgufValue i16(int16_t v);
    static GgufValue u32(uint32_t v);
    static GgufValue i32(int32_t v);
    static GgufValue f32(float v);
    static GgufValue boolean(bool v);
    static GgufValue string(std::string v);
    static GgufValue u64(uint64_t v);
    static GgufValue i64(int64_t v);
    static GgufValue f64(double v);
    static GgufValue stringArray(std::vector<std::string> v);
    static GgufValue f32Array(std::span<const float> v);
    static GgufValue i32Array(std::span<const int32_t> v);
    static GgufValue u32Array(std::span<const uint32_t> v);
    // Any numeric/bool element type from packed little-endian bytes (count * scalar size bytes).
    static GgufValue numericArray(GgufType elem, const void* bytes, uint64_t count);

    bool isArray() const { return type == GgufType::Array; }
    bool isString() const { return type == GgufType::String; }
    // Scalar conversions (nullopt if the type does not fit: e.g. a negative value for toUInt,
    // a string or array for any of them). Bool converts to 0/1 in toUInt/toInt.
    std::optional<uint64_t> toUInt() const;
    std::optional<int64_t> toInt() const;
    std::optional<double> toDouble() const;
    std::optional<bool> toBool() const;
    // Arrays.
    uint64_t arraySize() const { return isArray() ? count : 0; }
    std::optional<double> numberAt(uint64_t i) const;   // numeric/bool arrays
    const std::string& stringAt(uint64_t i) const;      // string arrays; "" when out of range
    std::vector<float> toF32Vector() const;             // numeric arrays converted; empty otherwise
    std::vector<int64_t> toIntVector() const;           // integer/bool arrays; empty otherwise

    // Display form: scalars as text, strings as-is (long ones cut), short arrays element by element,
    // long arrays summarised as "[string × 32000]".
    std::string display(size_t maxElements = 16) const;

    bool operator==(const GgufValue& o) const;
};

struct GgufKV {
    std::string key;
    GgufValue value;
};

struct GgufTensor {
    std::string name;
    std::vector<int64_t> ne;  // ggml order (ne[0] innermost), exactly n_dims entries as stored
    uint32_t ggmlType = 0;
    DType dtype = DType::F32;
    uint64_t offset = 0;      // relative to the start of the data section
    uint64_t nbytes = 0;
    uint64_t numel = 0;
};

struct GgufFile {
    std::string path;
    uint32_t version = 3;
    uint32_t alignment = kGgufDefaultAlignment;
    uint64_t dataOffset = 0;        // absolute offset of the data section
    uint64_t infosEnd = 0;          // absolute offset just past the last tensor info
    std::vector<GgufKV> kvs;        // in file order
    std::vector<GgufTensor> tensors;  // in file order
    std::shared_ptr<MappedFile> file;

    // Maps and parses a file.
    static Result<std::shared_ptr<const GgufFile>> open(const std::string& path);
    // Parses an already mapped file (its path is used in messages).
    static Result<std::shared_ptr<const GgufFile>> parse(std::shared_ptr<MappedFile> file);

    // Lookups (hashed for parsed files, linear for a GgufFile filled by hand).
    const GgufValue* find(std::string_view key) const;
    const GgufTensor* findTensor(std::string_view name) const;
    // Typed getters: nullopt if absent or not convertible (see GgufValue::toUInt etc.).
    std::optional<std::string> getString(std::string_view key) const;
    std::optional<uint64_t> getUInt(std::string_view key) const;
    std::optional<int64_t> getInt(std::string_view key) const;
    std::optional<double> getDouble(std::string_view key) const;
    std::optional<bool> getBool(std::string_view key) const;

    std::span<const uint8_t> tensorBytes(const GgufTensor& t) const;
    uint64_t tensorAbsoluteOffset(const GgufTensor& t) const { return dataOffset + t.offset; }

    // llama.cpp's stricter layout rule (README.md A.1): offset[i] == sum over j < i of
    // PAD(nbytes[j], alignment). Ok if the file satisfies it, else an error naming the first tensor
    // that does not.
    Status checkLlamaLayout() const;

private:
    std::unordered_map<std::string, size_t> m_kvIndex;
    std::unordered_map<std::string, size_t> m_tensorIndex;
    friend class GgufParser;
};

}  // namespace qz

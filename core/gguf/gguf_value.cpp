// GgufValue: construction, conversion and display of typed GGUF metadata values.
#include <charconv>
#include <cstring>

#include "gguf/gguf_file.h"

#include "common/file_util.h"

namespace qz {

std::string_view ggufTypeName(GgufType t) {
    switch (t) {
    case GgufType::U8: return "UINT8";
    case GgufType::I8: return "INT8";
    case GgufType::U16: return "UINT16";
    case GgufType::I16: return "INT16";
    case GgufType::U32: return "UINT32";
    case GgufType::I32: return "INT32";
    case GgufType::F32: return "FLOAT32";
    case GgufType::Bool: return "BOOL";
    case GgufType::String: return "STRING";
    case GgufType::Array: return "ARRAY";
    case GgufType::U64: return "UINT64";
    case GgufType::I64: return "INT64";
    case GgufType::F64: return "FLOAT64";
    }
    return "?";
}

size_t ggufScalarSize(GgufType t) {
    switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
    }
}

namespace {

GgufValue scalar(GgufType t, const void* p) {
    GgufValue v;
    v.type = t;
    std::memcpy(&v.bits, p, ggufScalarSize(t));
    return v;
}

// Decodes one scalar of type t from its raw little-endian bits.
struct Num {
    bool isFloat = false, isSigned = false;
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
};

Num decode(GgufType t, uint64_t bits) {
    Num n;
    switch (t) {
    case GgufType::U8: n.u = static_cast<uint8_t>(bits); break;
    case GgufType::U16: n.u = static_cast<uint16_t>(bits); break;
    case GgufType::U32: n.u = static_cast<uint32_t>(bits); break;
    case GgufType::U64: n.u = bits; break;
    case GgufType::Bool: n.u = (bits & 0xFF) != 0 ? 1 : 0; break;
    case GgufType::I8: n.isSigned = true; n.i = static_cast<int8_t>(bits); break;
    case GgufType::I16: n.isSigned = true; n.i = static_cast<int16_t>(bits); break;
    case GgufType::I32: n.isSigned = true; n.i = static_cast<int32_t>(bits); break;
    case GgufType::I64: n.isSigned = true; n.i = static_cast<int64_t>(bits); break;
    case GgufType::F32: {
        float f;
        const auto b = static_cast<uint32_t>(bits);
        std::memcpy(&f, &b, 4);
        n.isFloat = true;
        n.f = f;
        break;
    }
    case GgufType::F64: {
        double f;
        std::memcpy(&f, &bits, 8);
        n.isFloat = true;
        n.f = f;
        break;
    }
    default: break;
    }
    return n;
}

uint64_t elementBits(const GgufValue& v, uint64_t i) {
    uint64_t bits = 0;
    const size_t es = ggufScalarSize(v.elemType);
    std::memcpy(&bits, v.data.data() + i * es, es);
    return bits;
}

bool isNumeric(GgufType t) { return ggufScalarSize(t) != 0; }

std::string numberText(GgufType t, uint64_t bits) {
    if (t == GgufType::Bool) return (bits & 0xFF) ? "true" : "false";
    const Num n = decode(t, bits);
    char buf[64];
    std::to_chars_result r{};
    if (t == GgufType::F32)
        r = std::to_chars(buf, buf + sizeof buf, static_cast<float>(n.f));
    else if (n.isFloat)
        r = std::to_chars(buf, buf + sizeof buf, n.f);
    else if (n.isSigned)
        r = std::to_chars(buf, buf + sizeof buf, n.i);
    else
        r = std::to_chars(buf, buf + sizeof buf, n.u);
    return std::string(buf, r.ptr);
}

std::string shortTypeName(GgufType t) {
    switch (t) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
    default: return "?";
    }
}

std::string displayString(const std::string& s, size_t maxChars) {
    std::string out;
    const size_t n = std::min(s.size(), maxChars);
    for (size_t i = 0; i < n; ++i) {
        const char c = s[i];
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else out += c;
    }
    out = printableText(out);  // ESC, BEL, C1 controls: escaped (a terminal would act on them)
    if (s.size() > maxChars) {
        // do not cut a UTF-8 sequence in half
        while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
        if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0x80)) out.pop_back();
        out += "… (" + std::to_string(s.size()) + " bytes)";
    }
    return out;
}

}  // namespace

GgufValue GgufValue::u8(uint8_t v) { return scalar(GgufType::U8, &v); }
GgufValue GgufValue::i8(int8_t v) { return scalar(GgufType::I8, &v); }
GgufValue GgufValue::u16(uint16_t v) { return scalar(GgufType::U16, &v); }
GgufValue GgufValue::i16(int16_t v) { return scalar(GgufType::I16, &v); }
GgufValue GgufValue::u32(uint32_t v) { return scalar(GgufType::U32, &v); }
GgufValue GgufValue::i32(int32_t v) { return scalar(GgufType::I32, &v); }
GgufValue GgufValue::f32(float v) { return scalar(GgufType::F32, &v); }
GgufValue GgufValue::boolean(bool v) {
    const uint8_t b = v ? 1 : 0;
    return scalar(GgufType::Bool, &b);
}
GgufValue GgufValue::string(std::string v) {
    GgufValue r;
    r.type = GgufType::String;
    r.str = std::move(v);
    return r;
}
GgufValue GgufValue::u64(uint64_t v) { return scalar(GgufType::U64, &v); }
GgufValue GgufValue::i64(int64_t v) { return scalar(GgufType::I64, &v); }
GgufValue GgufValue::f64(double v) { return scalar(GgufType::F64, &v); }

GgufValue GgufValue::stringArray(std::vector<std::string> v) {
    GgufValue r;
    r.type = GgufType::Array;
    r.elemType = GgufType::String;
    r.count = v.size();
    r.strings = std::move(v);
    return r;
}

GgufValue GgufValue::numericArray(GgufType elem, const void* bytes, uint64_t count) {
    GgufValue r;
    r.type = GgufType::Array;
    r.elemType = elem;
    r.count = count;
    const size_t es = ggufScalarSize(elem);
    const auto* p = static_cast<const uint8_t*>(bytes);
    r.data.assign(p, p + count * es);
    return r;
}

GgufValue GgufValue::f32Array(std::span<const float> v) { return numericArray(GgufType::F32, v.data(), v.size()); }
GgufValue GgufValue::i32Array(std::span<const int32_t> v) { return numericArray(GgufType::I32, v.data(), v.size()); }
GgufValue GgufValue::u32Array(std::span<const uint32_t> v) { return numericArray(GgufType::U32, v.data(), v.size()); }

std::optional<uint64_t> GgufValue::toUInt() const {
    if (!isNumeric(type)) return std::nullopt;
    const Num n = decode(type, bits);
    if (n.isFloat) return std::nullopt;
    if (n.isSigned) return n.i < 0 ? std::nullopt : std::optional<uint64_t>(static_cast<uint64_t>(n.i));
    return n.u;
}

std::optional<int64_t> GgufValue::toInt() const {
    if (!isNumeric(type)) return std::nullopt;
    const Num n = decode(type, bits);
    if (n.isFloat) return std::nullopt;
    if (n.isSigned) return n.i;
    if (n.u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(n.u);
}

std::optional<double> GgufValue::toDouble() const {
    if (!isNumeric(type) || type == GgufType::Bool) return std::nullopt;
    const Num n = decode(type, bits);
    if (n.isFloat) return n.f;
    if (n.isSigned) return static_cast<double>(n.i);
    return static_cast<double>(n.u);
}

std::optional<bool> GgufValue::toBool() const {
    if (type != GgufType::Bool) return std::nullopt;
    return (bits & 0xFF) != 0;
}

std::optional<double> GgufValue::numberAt(uint64_t i) const {
    if (!isArray() || !isNumeric(elemType) || i >= count) return std::nullopt;
    const Num n = decode(elemType, elementBits(*this, i));
    if (n.isFloat) return n.f;
    if (n.isSigned) return static_cast<double>(n.i);
    return static_cast<double>(n.u);
}

const std::string& GgufValue::stringAt(uint64_t i) const {
    static const std::string empty;
    return i < strings.size() ? strings[i] : empty;
}

std::vector<float> GgufValue::toF32Vector() const {
    std::vector<float> out;
    if (!isArray() || !isNumeric(elemType)) return out;
    out.reserve(count);
    for (uint64_t i = 0; i < count; ++i) out.push_back(static_cast<float>(*numberAt(i)));
    return out;
}

std::vector<int64_t> GgufValue::toIntVector() const {
    std::vector<int64_t> out;
    if (!isArray() || !isNumeric(elemType) || elemType == GgufType::F32 || elemType == GgufType::F64) return out;
    out.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
        const Num n = decode(elemType, elementBits(*this, i));
        out.push_back(n.isSigned ? n.i : static_cast<int64_t>(n.u));
    }
    return out;
}

std::string GgufValue::display(size_t maxElements) const {
    if (type == GgufType::String) return displayString(str, 256);
    if (type != GgufType::Array) return numberText(type, bits);
    std::string s(1, '[');
    if (count > maxElements) {
        s.append(shortTypeName(elemType)).append(" × ").append(std::to_string(count)).push_back(']');
        return s;
    }
    for (uint64_t i = 0; i < count; ++i) {
        if (i) s += ", ";
        if (elemType == GgufType::String) {
            s.push_back('"');
            s.append(displayString(strings[i], 64)).push_back('"');
        } else
            s += numberText(elemType, elementBits(*this, i));
    }
    s.push_back(']');
    return s;
}

bool GgufValue::operator==(const GgufValue& o) const {
    if (type != o.type) return false;
    switch (type) {
    case GgufType::String: return str == o.str;
    case GgufType::Array:
        return elemType == o.elemType && count == o.count && data == o.data && strings == o.strings;
    default: return bits == o.bits;
    }
}

}  // namespace qz
